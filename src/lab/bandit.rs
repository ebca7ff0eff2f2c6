//! The optimiser's strategies for choosing the next level combination of a prompt template:
//! Thompson sampling over factor levels (an additive bandit, Taguchi's additive model as a
//! prior), random search, and the orthogonal array; each recommends a combination from what
//! it has seen.

use std::collections::BTreeMap;

use kakusan_core::rng::TorchCpuGenerator;

use super::argmax;

/// A uniform number in [0, 1).
fn uniform(gen: &mut TorchCpuGenerator) -> f64 {
    f64::from(gen.next_u32() >> 8) / f64::from(1u32 << 24)
}

/// Thompson sampling on Taguchi's additive model, fitted jointly: the reward of a combination
/// is the mean plus one effect per (factor, level); the effects get a Gaussian prior (sd
/// [`EFFECT_PRIOR_SD`]) and a Bayesian ridge fit over every picture so far, with the noise
/// estimated from the fit's residuals. A draw samples all effects from the joint posterior
/// and takes, per factor, the level whose sampled effect is highest. Fitting the factors
/// jointly (not one level mean at a time) keeps a factor's estimate free of the levels the
/// other factors happened to be drawn with, which matters once the draws concentrate.
///
/// It starts from `warm_start` combinations (the orthogonal array's rows, balanced, so
/// every effect is seen evenly) before it samples.
#[derive(Debug, Clone)]
pub struct FactorBandit {
    levels: Vec<usize>,
    warm_start: Vec<Vec<usize>>,
    seen: Vec<(Vec<usize>, f64)>,
}

/// Prior sd of one level's effect on the reward (rewards are probabilities or shares in
/// [0, 1]; an effect of 0.3 is large).
const EFFECT_PRIOR_SD: f64 = 0.3;
/// The residual sd assumed before there are enough pictures to estimate it (about the
/// spread of one prompt over seeds on kakusan-mini), and its floor.
const NOISE_SD_PRIOR: f64 = 0.1;
const NOISE_SD_FLOOR: f64 = 0.02;

impl FactorBandit {
    /// `levels[f]` is the number of levels of factor `f`; `warm_start` the combinations
    /// drawn first, in order.
    pub fn new(levels: &[usize], warm_start: Vec<Vec<usize>>) -> Self {
        Self {
            levels: levels.to_vec(),
            warm_start,
            seen: Vec::new(),
        }
    }

    pub fn record(&mut self, choice: &[usize], reward: f64) {
        self.seen.push((choice.to_vec(), reward));
    }

    /// The one-hot column of (factor, level).
    fn column(&self, f: usize, l: usize) -> usize {
        self.levels[..f].iter().sum::<usize>() + l
    }

    /// Posterior mean of the effects, its covariance, and the mean reward.
    fn posterior(&self) -> (Vec<f64>, Vec<Vec<f64>>, f64) {
        let p: usize = self.levels.iter().sum();
        let n = self.seen.len();
        let mean = if n == 0 {
            0.5
        } else {
            self.seen.iter().map(|(_, r)| r).sum::<f64>() / n as f64
        };
        let rows: Vec<Vec<usize>> = self
            .seen
            .iter()
            .map(|(c, _)| {
                c.iter()
                    .enumerate()
                    .map(|(f, &l)| self.column(f, l))
                    .collect()
            })
            .collect();
        let fit = |noise_var: f64| {
            // A = X'X / noise_var + I / prior_var, b = X'(y - mean) / noise_var.
            let mut a = vec![vec![0.0; p]; p];
            let mut b = vec![0.0; p];
            for (cols, (_, r)) in rows.iter().zip(&self.seen) {
                for &i in cols {
                    b[i] += (r - mean) / noise_var;
                    for &j in cols {
                        a[i][j] += 1.0 / noise_var;
                    }
                }
            }
            for (i, row) in a.iter_mut().enumerate() {
                row[i] += 1.0 / (EFFECT_PRIOR_SD * EFFECT_PRIOR_SD);
            }
            let cov = invert_spd(&a);
            let beta: Vec<f64> = cov
                .iter()
                .map(|row| row.iter().zip(&b).map(|(c, b)| c * b).sum())
                .collect();
            (beta, cov)
        };
        let (beta, _) = fit(NOISE_SD_PRIOR * NOISE_SD_PRIOR);
        // The residual variance of that fit, once there are more pictures than effects'
        // degrees of freedom (sum of (levels - 1)) plus a few.
        let dof: usize = self.levels.iter().map(|l| l - 1).sum();
        let noise_sd = if n > dof + 3 {
            let rss: f64 = rows
                .iter()
                .zip(&self.seen)
                .map(|(cols, (_, r))| {
                    let fitted = mean + cols.iter().map(|&i| beta[i]).sum::<f64>();
                    (r - fitted).powi(2)
                })
                .sum();
            (rss / (n - dof - 1) as f64).sqrt().max(NOISE_SD_FLOOR)
        } else {
            NOISE_SD_PRIOR
        };
        let (beta, cov) = fit(noise_sd * noise_sd);
        (beta, cov, mean)
    }

    /// The next combination: the next warm-start row, else a draw from the posterior.
    pub fn sample(&self, gen: &mut TorchCpuGenerator) -> Vec<usize> {
        if let Some(c) = self.warm_start.get(self.seen.len()) {
            return c.clone();
        }
        let (beta, cov, _) = self.posterior();
        let chol = cholesky(&cov);
        let z: Vec<f64> = (0..beta.len())
            .map(|_| f64::from(gen.randn(&[1])[0]))
            .collect();
        let draw: Vec<f64> = beta
            .iter()
            .enumerate()
            .map(|(i, b)| b + (0..=i).map(|j| chol[i][j] * z[j]).sum::<f64>())
            .collect();
        self.per_factor_best(&draw)
    }

    /// The combination with the highest posterior mean of every factor.
    pub fn best(&self) -> Vec<usize> {
        let (beta, _, _) = self.posterior();
        self.per_factor_best(&beta)
    }

    fn per_factor_best(&self, effects: &[f64]) -> Vec<usize> {
        (0..self.levels.len())
            .map(|f| {
                let start = self.column(f, 0);
                argmax(&effects[start..start + self.levels[f]])
            })
            .collect()
    }
}

/// The lower Cholesky factor of a symmetric positive definite matrix (tiny: one row per
/// factor level). A pivot that rounding made non-positive is taken as 0.
fn cholesky(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            if i == j {
                l[i][j] = (a[i][i] - s).max(0.0).sqrt();
            } else if l[j][j] > 0.0 {
                l[i][j] = (a[i][j] - s) / l[j][j];
            }
        }
    }
    l
}

/// The inverse of a symmetric positive definite matrix, by Gauss-Jordan elimination (the
/// ridge term keeps it well conditioned).
fn invert_spd(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = a.len();
    let mut m: Vec<Vec<f64>> = a.to_vec();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for col in 0..n {
        let pivot = m[col][col];
        for j in 0..n {
            m[col][j] /= pivot;
            inv[col][j] /= pivot;
        }
        for row in 0..n {
            if row != col {
                let factor = m[row][col];
                if factor != 0.0 {
                    for j in 0..n {
                        m[row][j] -= factor * m[col][j];
                        inv[row][j] -= factor * inv[col][j];
                    }
                }
            }
        }
    }
    inv
}

/// Random search: a uniformly random level of every factor; recommends the combination with
/// the best mean reward seen.
#[derive(Debug, Clone, Default)]
pub struct RandomSearch {
    levels: Vec<usize>,
    seen: BTreeMap<Vec<usize>, (f64, usize)>,
}

impl RandomSearch {
    pub fn new(levels: &[usize]) -> Self {
        Self {
            levels: levels.to_vec(),
            seen: BTreeMap::new(),
        }
    }

    pub fn sample(&self, gen: &mut TorchCpuGenerator) -> Vec<usize> {
        self.levels
            .iter()
            .map(|&l| ((uniform(gen) * l as f64) as usize).min(l - 1))
            .collect()
    }

    pub fn record(&mut self, choice: &[usize], reward: f64) {
        let e = self.seen.entry(choice.to_vec()).or_insert((0.0, 0));
        e.0 += reward;
        e.1 += 1;
    }

    /// The combination with the best mean reward seen (all first levels before any).
    pub fn best(&self) -> Vec<usize> {
        self.seen
            .iter()
            .map(|(c, (s, n))| (c, s / *n as f64))
            .fold(None, |b: Option<(&Vec<usize>, f64)>, (c, m)| match b {
                Some((_, bm)) if bm >= m => b,
                _ => Some((c, m)),
            })
            .map_or_else(|| vec![0; self.levels.len()], |(c, _)| c.clone())
    }
}

/// The additive model's choice from the pictures seen so far: per factor, the level with the
/// highest mean reward (the orthogonal array's optimum once all its rows are drawn).
pub fn additive_best(levels: &[usize], seen: &[(Vec<usize>, f64)]) -> Vec<usize> {
    levels
        .iter()
        .enumerate()
        .map(|(f, &n)| {
            let means: Vec<f64> = (0..n)
                .map(|l| {
                    let r: Vec<f64> = seen
                        .iter()
                        .filter(|(c, _)| c[f] == l)
                        .map(|(_, r)| *r)
                        .collect();
                    if r.is_empty() {
                        f64::MIN
                    } else {
                        r.iter().sum::<f64>() / r.len() as f64
                    }
                })
                .collect();
            argmax(&means)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up additive response: factor 0 wants level 2, factor 1 level 0, factor 2 level
    /// 1; each right level adds its share, plus a little noise.
    fn reward(c: &[usize], gen: &mut TorchCpuGenerator) -> f64 {
        let right = [2, 0, 1];
        let hits = c.iter().zip(right).filter(|(a, b)| **a == *b).count() as f64;
        0.1 + 0.25 * hits + 0.03 * f64::from(gen.randn(&[1])[0])
    }

    #[test]
    fn inverse_and_cholesky_of_a_small_spd_matrix() {
        let a = vec![
            vec![4.0, 2.0, 0.6],
            vec![2.0, 5.0, 1.0],
            vec![0.6, 1.0, 3.0],
        ];
        let inv = invert_spd(&a);
        let l = cholesky(&a);
        for i in 0..3 {
            for j in 0..3 {
                let id: f64 = (0..3).map(|k| a[i][k] * inv[k][j]).sum();
                assert!((id - f64::from(u8::from(i == j))).abs() < 1e-12);
                let llt: f64 = (0..3).map(|k| l[i][k] * l[j][k]).sum();
                assert!((llt - a[i][j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn warm_start_rows_come_first() {
        let rows = vec![vec![0, 1], vec![1, 0]];
        let mut bandit = FactorBandit::new(&[2, 2], rows.clone());
        let mut gen = TorchCpuGenerator::new(1);
        for row in &rows {
            let c = bandit.sample(&mut gen);
            assert_eq!(&c, row);
            bandit.record(&c, 0.5);
        }
        let c = bandit.sample(&mut gen);
        assert!(c[0] < 2 && c[1] < 2);
    }

    #[test]
    fn thompson_sampling_finds_the_additive_optimum() {
        let levels = [3, 3, 2];
        let mut bandit = FactorBandit::new(&levels, Vec::new());
        let mut gen = TorchCpuGenerator::new(3);
        let mut noise = TorchCpuGenerator::new(4);
        for _ in 0..40 {
            let c = bandit.sample(&mut gen);
            bandit.record(&c, reward(&c, &mut noise));
        }
        assert_eq!(bandit.best(), vec![2, 0, 1]);
    }

    #[test]
    fn random_search_recommends_its_best_seen_and_stays_in_range() {
        let levels = [3, 2];
        let mut rs = RandomSearch::new(&levels);
        let mut gen = TorchCpuGenerator::new(9);
        assert_eq!(rs.best(), vec![0, 0]);
        for _ in 0..50 {
            let c = rs.sample(&mut gen);
            assert!(c[0] < 3 && c[1] < 2);
            let r = if c == [1, 1] { 0.9 } else { 0.1 };
            rs.record(&c, r);
        }
        assert_eq!(rs.best(), vec![1, 1]);
    }

    #[test]
    fn additive_best_reads_level_means() {
        let seen = vec![
            (vec![0, 0], 0.1),
            (vec![0, 1], 0.3),
            (vec![1, 0], 0.6),
            (vec![1, 1], 0.8),
        ];
        assert_eq!(additive_best(&[2, 2], &seen), vec![1, 1]);
    }
}
