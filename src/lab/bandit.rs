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

/// Thompson sampling with one Gaussian arm per (factor, level): the reward of a combination
/// is taken as the sum of its levels' effects, each level's mean estimated from the rewards
/// of the pictures that used it, shrunk towards the mean of all rewards.
#[derive(Debug, Clone)]
pub struct FactorBandit {
    counts: Vec<Vec<usize>>,
    sums: Vec<Vec<f64>>,
    rewards: Vec<f64>,
}

impl FactorBandit {
    /// `levels[f]` is the number of levels of factor `f`.
    pub fn new(levels: &[usize]) -> Self {
        Self {
            counts: levels.iter().map(|&l| vec![0; l]).collect(),
            sums: levels.iter().map(|&l| vec![0.0; l]).collect(),
            rewards: Vec::new(),
        }
    }

    pub fn record(&mut self, choice: &[usize], reward: f64) {
        for (f, &l) in choice.iter().enumerate() {
            self.counts[f][l] += 1;
            self.sums[f][l] += reward;
        }
        self.rewards.push(reward);
    }

    /// The mean of every reward so far (0.5 before the first).
    fn prior_mean(&self) -> f64 {
        if self.rewards.is_empty() {
            0.5
        } else {
            self.rewards.iter().sum::<f64>() / self.rewards.len() as f64
        }
    }

    /// The spread of single rewards (0.5 before there are two; never below 0.02).
    fn sigma(&self) -> f64 {
        let n = self.rewards.len();
        if n < 2 {
            return 0.5;
        }
        let m = self.prior_mean();
        let var = self.rewards.iter().map(|r| (r - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        var.sqrt().max(0.02)
    }

    /// Posterior mean of level `l` of factor `f`: its rewards plus one pseudo-reward at the
    /// prior mean.
    fn mean(&self, f: usize, l: usize) -> f64 {
        (self.sums[f][l] + self.prior_mean()) / (self.counts[f][l] + 1) as f64
    }

    /// A combination drawn from the posterior: per factor, the level whose sampled mean is
    /// highest.
    pub fn sample(&self, gen: &mut TorchCpuGenerator) -> Vec<usize> {
        let sigma = self.sigma();
        (0..self.counts.len())
            .map(|f| {
                let draws: Vec<f64> = (0..self.counts[f].len())
                    .map(|l| {
                        let z = f64::from(gen.randn(&[1])[0]);
                        let sd = sigma / ((self.counts[f][l] + 1) as f64).sqrt();
                        self.mean(f, l) + sd * z
                    })
                    .collect();
                argmax(&draws)
            })
            .collect()
    }

    /// The combination with the highest posterior mean of every factor.
    pub fn best(&self) -> Vec<usize> {
        (0..self.counts.len())
            .map(|f| {
                let means: Vec<f64> = (0..self.counts[f].len()).map(|l| self.mean(f, l)).collect();
                argmax(&means)
            })
            .collect()
    }
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
    fn thompson_sampling_finds_the_additive_optimum() {
        let levels = [3, 3, 2];
        let mut bandit = FactorBandit::new(&levels);
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
