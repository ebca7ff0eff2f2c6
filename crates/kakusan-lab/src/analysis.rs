//! SN ratios, level means (main effects), ANOVA with % contribution and pooling, and the
//! prediction of the optimum under the additive model.

use serde::{Deserialize, Serialize};

use crate::arrays::{dummy_level, OrthogonalArray};
use crate::stats::{f_p_value, f_quantile_upper};

/// Why an analysis cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalysisError {
    #[error("no responses to compute an SN ratio from")]
    Empty,
    #[error("response {index} is {value}: larger-the-better needs every response > 0 (1/y^2 is infinite at 0)")]
    NotPositive { index: usize, value: f64 },
    #[error("response {index} is not a finite number ({value})")]
    NotFinite { index: usize, value: f64 },
    #[error("{sn} needs at least 2 responses (noise repetitions) per run, got {got}")]
    TooFewForVariance { sn: &'static str, got: usize },
    #[error(
        "all {n} responses are equal ({value}): the variance is 0 and the {sn} ratio is infinite"
    )]
    ZeroVariance {
        sn: &'static str,
        n: usize,
        value: f64,
    },
    #[error("{0}")]
    Shape(String),
}

/// The SN ratio types (Taguchi's "characteristics").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnType {
    /// η = −10·log10(mean(1/y²)).
    LargerTheBetter,
    /// η = −10·log10(mean(y²)).
    SmallerTheBetter,
    /// Type I: η = 10·log10(ȳ²/s²), s² with n − 1.
    NominalTheBest,
    /// Type II (variance only, for responses whose mean is adjusted by another factor or may
    /// be 0 or negative): η = −10·log10(s²).
    NominalVariance,
}

impl SnType {
    pub fn name(self) -> &'static str {
        match self {
            SnType::LargerTheBetter => "larger-the-better",
            SnType::SmallerTheBetter => "smaller-the-better",
            SnType::NominalTheBest => "nominal-the-best",
            SnType::NominalVariance => "nominal-variance",
        }
    }

    /// The SN ratio (dB) of one run's responses over the noise conditions.
    pub fn sn(self, y: &[f64]) -> Result<f64, AnalysisError> {
        if y.is_empty() {
            return Err(AnalysisError::Empty);
        }
        for (index, &value) in y.iter().enumerate() {
            if !value.is_finite() {
                return Err(AnalysisError::NotFinite { index, value });
            }
        }
        let n = y.len() as f64;
        match self {
            SnType::LargerTheBetter => {
                if let Some((index, &value)) = y.iter().enumerate().find(|(_, &v)| v <= 0.0) {
                    return Err(AnalysisError::NotPositive { index, value });
                }
                Ok(-10.0 * (y.iter().map(|v| 1.0 / (v * v)).sum::<f64>() / n).log10())
            }
            SnType::SmallerTheBetter => {
                let msq = y.iter().map(|v| v * v).sum::<f64>() / n;
                if msq == 0.0 {
                    return Err(AnalysisError::ZeroVariance {
                        sn: self.name(),
                        n: y.len(),
                        value: 0.0,
                    });
                }
                Ok(-10.0 * msq.log10())
            }
            SnType::NominalTheBest | SnType::NominalVariance => {
                let (mean, var) = mean_var(y).ok_or(AnalysisError::TooFewForVariance {
                    sn: self.name(),
                    got: y.len(),
                })?;
                if var == 0.0 {
                    return Err(AnalysisError::ZeroVariance {
                        sn: self.name(),
                        n: y.len(),
                        value: y[0],
                    });
                }
                Ok(match self {
                    SnType::NominalTheBest => 10.0 * (mean * mean / var).log10(),
                    _ => -10.0 * var.log10(),
                })
            }
        }
    }
}

/// Mean and unbiased variance (n − 1); `None` for fewer than 2 values.
pub fn mean_var(y: &[f64]) -> Option<(f64, f64)> {
    if y.len() < 2 {
        return None;
    }
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let var = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    Some((mean, var))
}

/// Taguchi's nominal-the-best with the bias of ȳ² removed:
/// η = 10·log10(((S_m − V_e)/n) / V_e), S_m = (Σy)²/n, V_e = (Σy² − S_m)/(n − 1).
/// Reported alongside type I for engineers who use the textbook form.
pub fn nominal_the_best_unbiased(y: &[f64]) -> Result<f64, AnalysisError> {
    let n = y.len();
    if n < 2 {
        return Err(AnalysisError::TooFewForVariance {
            sn: "nominal-the-best",
            got: n,
        });
    }
    let nf = n as f64;
    let sum: f64 = y.iter().sum();
    let sm = sum * sum / nf;
    let ve = (y.iter().map(|v| v * v).sum::<f64>() - sm) / (nf - 1.0);
    if ve <= 0.0 {
        return Err(AnalysisError::ZeroVariance {
            sn: "nominal-the-best",
            n,
            value: y[0],
        });
    }
    Ok(10.0 * (((sm - ve) / nf) / ve).log10())
}

fn check_design(oa: &OrthogonalArray, cols: &[usize], y: &[f64]) -> Result<(), AnalysisError> {
    if y.len() != oa.runs() {
        return Err(AnalysisError::Shape(format!(
            "{} has {} runs but {} values were given",
            oa.kind,
            oa.runs(),
            y.len()
        )));
    }
    for (index, &value) in y.iter().enumerate() {
        if !value.is_finite() {
            return Err(AnalysisError::NotFinite { index, value });
        }
    }
    for (f, &c) in cols.iter().enumerate() {
        if c >= oa.columns() {
            return Err(AnalysisError::Shape(format!(
                "factor {f} is on column {} but {} has {}",
                c + 1,
                oa.kind,
                oa.columns()
            )));
        }
        if cols[..f].contains(&c) {
            return Err(AnalysisError::Shape(format!(
                "column {} is assigned twice",
                c + 1
            )));
        }
    }
    Ok(())
}

/// Level means (main effects) of each factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Effects {
    /// Mean over all runs.
    pub grand_mean: f64,
    /// `level_means[factor][level]`.
    pub level_means: Vec<Vec<f64>>,
    /// Runs at each level, `counts[factor][level]` (equal, except under dummy treatment).
    pub counts: Vec<Vec<usize>>,
}

impl Effects {
    /// `cols[f]` is the array column of factor `f`; `y[run]` the value per run (usually η).
    pub fn compute(oa: &OrthogonalArray, cols: &[usize], y: &[f64]) -> Result<Self, AnalysisError> {
        let levels: Vec<usize> = cols
            .iter()
            .map(|&c| oa.levels.get(c).map_or(0, |&l| l as usize))
            .collect();
        Self::compute_with_levels(oa, cols, &levels, y)
    }

    /// As [`Effects::compute`], for factors with fewer levels than their column: a two-level
    /// factor on a three-level column (dummy treatment) reads the column's level 3 as its
    /// level 1 (see [`crate::arrays::design`]).
    pub fn compute_with_levels(
        oa: &OrthogonalArray,
        cols: &[usize],
        factor_levels: &[usize],
        y: &[f64],
    ) -> Result<Self, AnalysisError> {
        check_design(oa, cols, y)?;
        if factor_levels.len() != cols.len() {
            return Err(AnalysisError::Shape(format!(
                "{} level counts for {} factors",
                factor_levels.len(),
                cols.len()
            )));
        }
        let grand_mean = y.iter().sum::<f64>() / y.len() as f64;
        let mut level_means = Vec::with_capacity(cols.len());
        let mut counts = Vec::with_capacity(cols.len());
        for (&c, &l) in cols.iter().zip(factor_levels) {
            if l < 2 || l > oa.levels[c] as usize {
                return Err(AnalysisError::Shape(format!(
                    "a {l}-level factor cannot sit on column {} with {} levels",
                    c + 1,
                    oa.levels[c]
                )));
            }
            let mut sum = vec![0.0; l];
            let mut count = vec![0usize; l];
            for (row, v) in oa.rows.iter().zip(y) {
                let lv = dummy_level(row[c], l);
                sum[lv] += v;
                count[lv] += 1;
            }
            level_means.push(sum.iter().zip(&count).map(|(s, &n)| s / n as f64).collect());
            counts.push(count);
        }
        Ok(Effects {
            grand_mean,
            level_means,
            counts,
        })
    }

    /// max − min of each factor's level means (the "delta" of a response table).
    pub fn ranges(&self) -> Vec<f64> {
        self.level_means
            .iter()
            .map(|m| {
                m.iter().cloned().fold(f64::MIN, f64::max)
                    - m.iter().cloned().fold(f64::MAX, f64::min)
            })
            .collect()
    }

    /// The level with the largest mean per factor (the best for an SN ratio; the first one on
    /// ties).
    pub fn best_levels(&self) -> Vec<usize> {
        self.level_means
            .iter()
            .map(|m| {
                let mut best = 0;
                for (i, v) in m.iter().enumerate() {
                    if *v > m[best] {
                        best = i;
                    }
                }
                best
            })
            .collect()
    }

    /// Additive-model prediction: grand mean + Σ (level mean − grand mean) over the factors
    /// given a level (`None` = factor left out, e.g. an insignificant one).
    pub fn predict(&self, levels: &[Option<usize>]) -> Result<f64, AnalysisError> {
        if levels.len() != self.level_means.len() {
            return Err(AnalysisError::Shape(format!(
                "{} levels given for {} factors",
                levels.len(),
                self.level_means.len()
            )));
        }
        let mut eta = self.grand_mean;
        for (f, l) in levels.iter().enumerate() {
            if let Some(l) = *l {
                let m = self.level_means[f].get(l).ok_or_else(|| {
                    AnalysisError::Shape(format!("factor {f} has no level {}", l + 1))
                })?;
                eta += m - self.grand_mean;
            }
        }
        Ok(eta)
    }

    /// The best level of every factor in `use_factors` and the predicted value there; the
    /// other factors are left out of the prediction (and get their best level too, which the
    /// prediction does not count on).
    pub fn optimum(&self, use_factors: &[usize]) -> Result<(Vec<usize>, f64), AnalysisError> {
        let best = self.best_levels();
        let levels: Vec<Option<usize>> = (0..best.len())
            .map(|f| use_factors.contains(&f).then_some(best[f]))
            .collect();
        Ok((best, self.predict(&levels)?))
    }
}

/// Which factors go into the error term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pooling {
    None,
    /// These factors (indices into the factor list).
    Factors(Vec<usize>),
    /// Pool the factors with the smallest sums of squares, one at a time, until the error has
    /// at least half of the total degrees of freedom (Taguchi's rule of thumb), always leaving
    /// at least one factor unpooled.
    HalfDof,
}

/// One line of the ANOVA table.
#[derive(Debug, Clone, PartialEq)]
pub struct AnovaRow {
    /// Sum of squares S.
    pub ss: f64,
    pub dof: usize,
    /// Variance V = S / dof.
    pub var: f64,
    /// F = V / V_error, when the error has degrees of freedom and the factor is not pooled.
    pub f: Option<f64>,
    /// P(F(dof, error dof) > F): the chance of an F this large from noise alone.
    pub p: Option<f64>,
    /// Pure sum of squares S' = S − dof·V_error.
    pub pure_ss: f64,
    /// % contribution ρ = S'/S_T·100.
    pub rho: f64,
    pub pooled: bool,
}

/// ANOVA of a value per run (usually η) over an orthogonal array.
#[derive(Debug, Clone, PartialEq)]
pub struct Anova {
    pub factors: Vec<AnovaRow>,
    /// The (pooled) error: empty columns' residual plus pooled factors.
    pub error: AnovaRow,
    pub total_ss: f64,
    pub total_dof: usize,
}

impl Anova {
    pub fn compute(
        oa: &OrthogonalArray,
        cols: &[usize],
        y: &[f64],
        pooling: &Pooling,
    ) -> Result<Self, AnalysisError> {
        let levels: Vec<usize> = cols
            .iter()
            .map(|&c| oa.levels.get(c).map_or(0, |&l| l as usize))
            .collect();
        Self::compute_with_levels(oa, cols, &levels, y, pooling)
    }

    /// As [`Anova::compute`], with dummy-treated factors (see
    /// [`Effects::compute_with_levels`]): S = Σ n_l·(m_l − m)² over the factor's own levels.
    pub fn compute_with_levels(
        oa: &OrthogonalArray,
        cols: &[usize],
        factor_levels: &[usize],
        y: &[f64],
        pooling: &Pooling,
    ) -> Result<Self, AnalysisError> {
        let eff = Effects::compute_with_levels(oa, cols, factor_levels, y)?;
        let n = y.len() as f64;
        let total: f64 = y.iter().sum();
        let cf = total * total / n;
        let total_ss = (y.iter().map(|v| v * v).sum::<f64>() - cf).max(0.0);
        let total_dof = y.len() - 1;
        let mut ss: Vec<f64> = Vec::with_capacity(cols.len());
        let mut dof: Vec<usize> = Vec::with_capacity(cols.len());
        for ((means, counts), &l) in eff.level_means.iter().zip(&eff.counts).zip(factor_levels) {
            let s: f64 = means
                .iter()
                .zip(counts)
                .map(|(m, &k)| k as f64 * (m - eff.grand_mean).powi(2))
                .sum();
            ss.push(s);
            dof.push(l - 1);
        }
        let pooled: Vec<bool> = match pooling {
            Pooling::None => vec![false; cols.len()],
            Pooling::Factors(list) => {
                if let Some(&bad) = list.iter().find(|&&f| f >= cols.len()) {
                    return Err(AnalysisError::Shape(format!(
                        "cannot pool factor {bad}: there are {} factors",
                        cols.len()
                    )));
                }
                (0..cols.len()).map(|f| list.contains(&f)).collect()
            }
            Pooling::HalfDof => {
                let mut order: Vec<usize> = (0..cols.len()).collect();
                order.sort_by(|&a, &b| ss[a].total_cmp(&ss[b]));
                let mut p = vec![false; cols.len()];
                let mut err_dof = total_dof - dof.iter().sum::<usize>();
                for &f in order.iter().take(cols.len().saturating_sub(1)) {
                    if 2 * err_dof >= total_dof {
                        break;
                    }
                    p[f] = true;
                    err_dof += dof[f];
                }
                p
            }
        };
        let assigned_ss: f64 = ss.iter().sum();
        let assigned_dof: usize = dof.iter().sum();
        let mut err_ss = (total_ss - assigned_ss).max(0.0);
        let mut err_dof = total_dof - assigned_dof;
        for f in 0..cols.len() {
            if pooled[f] {
                err_ss += ss[f];
                err_dof += dof[f];
            }
        }
        let err_var = if err_dof > 0 {
            err_ss / err_dof as f64
        } else {
            0.0
        };
        let pct = |s: f64| {
            if total_ss > 0.0 {
                100.0 * s / total_ss
            } else {
                0.0
            }
        };
        let mut unpooled_dof = 0;
        let factors: Vec<AnovaRow> = (0..cols.len())
            .map(|f| {
                let var = ss[f] / dof[f] as f64;
                if pooled[f] {
                    AnovaRow {
                        ss: ss[f],
                        dof: dof[f],
                        var,
                        f: None,
                        p: None,
                        pure_ss: 0.0,
                        rho: 0.0,
                        pooled: true,
                    }
                } else {
                    unpooled_dof += dof[f];
                    let pure = ss[f] - dof[f] as f64 * err_var;
                    let fr = (err_dof > 0 && err_var > 0.0).then(|| var / err_var);
                    AnovaRow {
                        ss: ss[f],
                        dof: dof[f],
                        var,
                        f: fr,
                        p: fr.map(|x| f_p_value(x, dof[f] as f64, err_dof as f64)),
                        pure_ss: pure,
                        rho: pct(pure),
                        pooled: false,
                    }
                }
            })
            .collect();
        let err_pure = err_ss + unpooled_dof as f64 * err_var;
        let error = AnovaRow {
            ss: err_ss,
            dof: err_dof,
            var: err_var,
            f: None,
            p: None,
            pure_ss: err_pure,
            rho: pct(err_pure),
            pooled: false,
        };
        Ok(Anova {
            factors,
            error,
            total_ss,
            total_dof,
        })
    }
}

impl Anova {
    /// Taguchi's confidence half-width of a prediction that uses the factors `used`:
    /// √(F_alpha(1, f_e)·V_e·(1/n_eff + 1/r)), with the effective number of replications
    /// n_eff = runs / (1 + Σ dof of the used factors) and `confirm_runs` = r repetitions of
    /// the confirmation run (`None`: the interval of the predicted mean itself, without 1/r).
    pub fn confidence_interval(
        &self,
        used: &[usize],
        alpha: f64,
        confirm_runs: Option<usize>,
    ) -> Result<f64, AnalysisError> {
        if self.error.dof == 0 || self.error.var <= 0.0 {
            return Err(AnalysisError::Shape(
                "the error has no degrees of freedom: pool the smallest factors first".into(),
            ));
        }
        let mut dof_used = 0;
        for &f in used {
            let row = self
                .factors
                .get(f)
                .ok_or_else(|| AnalysisError::Shape(format!("there is no factor {f}")))?;
            dof_used += row.dof;
        }
        let f = f_quantile_upper(alpha, 1.0, self.error.dof as f64)
            .ok_or_else(|| AnalysisError::Shape(format!("alpha must be in (0, 1), got {alpha}")))?;
        let n_eff = (self.total_dof + 1) as f64 / (1 + dof_used) as f64;
        let r = match confirm_runs {
            Some(0) => {
                return Err(AnalysisError::Shape(
                    "a confirmation needs at least 1 run".into(),
                ))
            }
            Some(r) => 1.0 / r as f64,
            None => 0.0,
        };
        Ok((f * self.error.var * (1.0 / n_eff + r)).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrays::ArrayKind;

    // Tolerances: the hand calculations below are exact rationals or logarithms evaluated to
    // 4-5 significant digits by hand, so 1e-3 dB / 1e-9 on exact sums is what they support.
    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
    }

    #[test]
    fn sn_ratios_by_hand() {
        // Hand calculation (no book): y = [1, 2]: mean(1/y²) = (1 + 1/4)/2 = 0.625,
        // η = −10·log10(0.625) = 2.0412 dB.
        close(
            SnType::LargerTheBetter.sn(&[1.0, 2.0]).unwrap(),
            2.0412,
            1e-3,
        );
        // y = [1, 3]: mean(y²) = 5, η = −10·log10(5) = −6.9897 dB.
        close(
            SnType::SmallerTheBetter.sn(&[1.0, 3.0]).unwrap(),
            -6.9897,
            1e-3,
        );
        // y = [9, 11]: ȳ = 10, s² = (1 + 1)/1 = 2, η = 10·log10(100/2) = 16.9897 dB.
        close(
            SnType::NominalTheBest.sn(&[9.0, 11.0]).unwrap(),
            16.9897,
            1e-3,
        );
        // Type II: −10·log10(2) = −3.0103 dB.
        close(
            SnType::NominalVariance.sn(&[9.0, 11.0]).unwrap(),
            -3.0103,
            1e-3,
        );
        // Unbiased form: S_m = 20²/2 = 200, S_T = 81 + 121 = 202, V_e = 2,
        // η = 10·log10((200 − 2)/2/2) = 10·log10(49.5) = 16.9461 dB.
        close(
            nominal_the_best_unbiased(&[9.0, 11.0]).unwrap(),
            16.9461,
            1e-3,
        );
        // Identical responses: larger-the-better of a constant c is 20·log10(c).
        close(SnType::LargerTheBetter.sn(&[10.0; 4]).unwrap(), 20.0, 1e-12);
    }

    #[test]
    fn sn_errors() {
        assert_eq!(SnType::SmallerTheBetter.sn(&[]), Err(AnalysisError::Empty));
        assert!(matches!(
            SnType::LargerTheBetter.sn(&[1.0, 0.0]),
            Err(AnalysisError::NotPositive { index: 1, .. })
        ));
        assert!(matches!(
            SnType::NominalTheBest.sn(&[1.0]),
            Err(AnalysisError::TooFewForVariance { got: 1, .. })
        ));
        let e = SnType::NominalTheBest.sn(&[3.0, 3.0]).unwrap_err();
        assert!(e.to_string().contains("variance is 0"), "{e}");
        assert!(matches!(
            SnType::SmallerTheBetter.sn(&[f64::NAN]),
            Err(AnalysisError::NotFinite { .. })
        ));
    }

    /// The CVD example of M. S. Phadke, "Quality Engineering Using Robust Design"
    /// (Prentice Hall, 1989), chapter 3: four three-level factors A-D on L9 columns 1-4, with
    /// the η of the nine runs (dB) −20, −10, −30, −25, −45, −65, −45, −65, −70. The book was
    /// not at hand here; the η values were checked against J. J. Nahas, "Statistical Design of
    /// Experiments Part II: A CVD System Experiment" (lecture slides, 2012), which restate
    /// Phadke's example with the same nine η, m = −41.7 and m_A1 = −20. Every other expected
    /// number below was derived by hand from the nine η (they agree with the book's ANOVA as
    /// remembered: A 2450, B 950, C 350, D 50, total 3800, F_A = 49 with D pooled).
    const PHADKE_ETA: [f64; 9] = [
        -20.0, -10.0, -30.0, -25.0, -45.0, -65.0, -45.0, -65.0, -70.0,
    ];

    #[test]
    fn phadke_cvd_level_means() {
        let oa = ArrayKind::L9.build();
        let e = Effects::compute(&oa, &[0, 1, 2, 3], &PHADKE_ETA).unwrap();
        // m = −375/9 = −41.667.
        close(e.grand_mean, -375.0 / 9.0, 1e-9);
        // A: runs 1-3, 4-6, 7-9. B: runs {1,4,7}, {2,5,8}, {3,6,9}. C (col 3): {1,6,8},
        // {2,4,9}, {3,5,7}. D (col 4): {1,5,9}, {2,6,7}, {3,4,8}.
        let want = [
            [-20.0, -45.0, -60.0],
            [-30.0, -40.0, -55.0],
            [-50.0, -35.0, -40.0],
            [-45.0, -40.0, -40.0],
        ];
        for (got, want) in e.level_means.iter().zip(want) {
            for (g, w) in got.iter().zip(want) {
                close(*g, w, 1e-9);
            }
        }
        assert_eq!(e.best_levels(), vec![0, 0, 1, 1]);
        let r = e.ranges();
        close(r[0], 40.0, 1e-9);
        close(r[3], 5.0, 1e-9);
        // Optimum A1 B1 C2 (D left out): −41.667 + 21.667 + 11.667 + 6.667 = −1.667 dB.
        let (_, eta) = e.optimum(&[0, 1, 2]).unwrap();
        close(eta, -5.0 / 3.0, 1e-9);
        // The starting condition A2 B2 C1 D2 with all four factors:
        // −41.667 − 3.333 + 1.667 − 8.333 + 1.667 = −50.
        close(
            e.predict(&[Some(1), Some(1), Some(0), Some(1)]).unwrap(),
            -50.0,
            1e-9,
        );
    }

    #[test]
    fn phadke_cvd_anova_with_d_pooled() {
        let oa = ArrayKind::L9.build();
        let a = Anova::compute(&oa, &[0, 1, 2, 3], &PHADKE_ETA, &Pooling::None).unwrap();
        // Saturated: S = 3·Σ(level mean − m)² per factor, no error dof.
        let ss = [2450.0, 950.0, 350.0, 50.0];
        for (row, s) in a.factors.iter().zip(ss) {
            close(row.ss, s, 1e-9);
            assert_eq!(row.dof, 2);
            assert_eq!(row.f, None);
        }
        close(a.total_ss, 3800.0, 1e-9);
        assert_eq!(a.total_dof, 8);
        assert_eq!(a.error.dof, 0);
        close(a.error.ss, 0.0, 1e-9);

        // Pool D: V_e = 50/2 = 25; F = 1225/25 = 49, 475/25 = 19, 175/25 = 7;
        // S' = S − 2·25: 2400, 900, 300; ρ = S'/3800: 63.158 %, 23.684 %, 7.895 %;
        // error S' = 50 + 6·25 = 200, ρ = 5.263 %; the ρ sum to 100 %.
        let a =
            Anova::compute(&oa, &[0, 1, 2, 3], &PHADKE_ETA, &Pooling::Factors(vec![3])).unwrap();
        close(a.error.ss, 50.0, 1e-9);
        assert_eq!(a.error.dof, 2);
        close(a.error.var, 25.0, 1e-9);
        for (row, (f, rho)) in a
            .factors
            .iter()
            .zip([(49.0, 63.158), (19.0, 23.684), (7.0, 7.895)])
        {
            close(row.f.unwrap(), f, 1e-9);
            close(row.rho, rho, 1e-3);
        }
        assert!(a.factors[3].pooled);
        close(a.error.rho, 5.263, 1e-3);
        let sum: f64 = a.factors.iter().map(|r| r.rho).sum::<f64>() + a.error.rho;
        close(sum, 100.0, 1e-9);
        // p of F(2, 2) = 49: P(F > f) = 1/(1 + f) for d1 = d2 = 2, so 1/50.
        close(a.factors[0].p.unwrap(), 0.02, 1e-10);
        assert_eq!(a.factors[3].p, None);
        // Confidence interval of the optimum A1 B1 C2: n_eff = 9/(1 + 6) = 9/7;
        // F_0.05(1, 2) = 1.805/0.0975 (t(2)² closed form, see stats.rs);
        // half-width √(F·25·7/9) = 18.9729; with 3 confirmation runs √(F·25·(7/9 + 1/3)).
        let f: f64 = 1.805 / 0.0975;
        let ci = a.confidence_interval(&[0, 1, 2], 0.05, None).unwrap();
        close(ci, (f * 25.0 * 7.0 / 9.0).sqrt(), 1e-8);
        close(ci, 18.9729, 1e-4);
        let ci = a.confidence_interval(&[0, 1, 2], 0.05, Some(3)).unwrap();
        close(ci, (f * 25.0 * (7.0 / 9.0 + 1.0 / 3.0)).sqrt(), 1e-8);

        // HalfDof pools the smallest (D, then C) until the error has ≥ 4 of the 8 dof:
        // V_e = (50 + 350)/4 = 100, F_A = 1225/100 = 12.25, F_B = 4.75.
        let a = Anova::compute(&oa, &[0, 1, 2, 3], &PHADKE_ETA, &Pooling::HalfDof).unwrap();
        assert_eq!(
            a.factors.iter().map(|r| r.pooled).collect::<Vec<_>>(),
            vec![false, false, true, true]
        );
        close(a.error.var, 100.0, 1e-9);
        close(a.factors[0].f.unwrap(), 12.25, 1e-9);
        close(a.factors[1].f.unwrap(), 4.75, 1e-9);
    }

    #[test]
    fn dummy_treated_factor_by_hand() {
        // Hand calculation on the same nine η: a two-level factor X on L9 column 4 with the
        // column's level 3 read as X1 (dummy treatment). X1 = runs 1,3,4,5,8,9:
        // −20 −30 −25 −45 −65 −70 = −255 (mean −42.5); X2 = runs 2,6,7: −120 (mean −40).
        // S_X = 255²/6 + 120²/3 − 375²/9 = 10837.5 + 4800 − 15625 = 12.5, 1 dof; the error
        // keeps column 4's other dof: S_e = 3800 − 2450 − 950 − 350 − 12.5 = 37.5.
        let oa = ArrayKind::L9.build();
        let e =
            Effects::compute_with_levels(&oa, &[3, 0, 1, 2], &[2, 3, 3, 3], &PHADKE_ETA).unwrap();
        close(e.level_means[0][0], -42.5, 1e-9);
        close(e.level_means[0][1], -40.0, 1e-9);
        assert_eq!(e.counts[0], vec![6, 3]);
        let a = Anova::compute_with_levels(
            &oa,
            &[3, 0, 1, 2],
            &[2, 3, 3, 3],
            &PHADKE_ETA,
            &Pooling::None,
        )
        .unwrap();
        close(a.factors[0].ss, 12.5, 1e-9);
        assert_eq!(a.factors[0].dof, 1);
        close(a.factors[1].ss, 2450.0, 1e-9);
        close(a.error.ss, 37.5, 1e-9);
        assert_eq!(a.error.dof, 1);
        // F_X = 12.5/37.5.
        close(a.factors[0].f.unwrap(), 1.0 / 3.0, 1e-9);
        assert!(Effects::compute_with_levels(&oa, &[0], &[4], &PHADKE_ETA).is_err());
    }

    #[test]
    fn l4_with_an_empty_column_by_hand() {
        // Hand calculation (no book): L4, A on column 1, B on column 2, column 3 left empty
        // for the error; y = 10, 12, 14, 20.
        // T = 56, CF = 56²/4 = 784, S_T = 840 − 784 = 56.
        // A1 = 10 + 12 = 22, A2 = 34: S_A = (22² + 34²)/2 − 784 = 36.
        // B1 = 10 + 14 = 24, B2 = 32: S_B = (24² + 32²)/2 − 784 = 16.
        // Error (column 3: runs 1,4 vs 2,3: 30, 26): S_e = (30² + 26²)/2 − 784 = 4, 1 dof.
        // F_A = 36/4 = 9, F_B = 16/4 = 4. S'_A = 32 (57.143 %), S'_B = 12 (21.429 %),
        // S'_e = 4 + 2·4 = 12 (21.429 %).
        let oa = ArrayKind::L4.build();
        let y = [10.0, 12.0, 14.0, 20.0];
        let a = Anova::compute(&oa, &[0, 1], &y, &Pooling::None).unwrap();
        close(a.total_ss, 56.0, 1e-9);
        close(a.factors[0].ss, 36.0, 1e-9);
        close(a.factors[1].ss, 16.0, 1e-9);
        close(a.error.ss, 4.0, 1e-9);
        assert_eq!(a.error.dof, 1);
        close(a.factors[0].f.unwrap(), 9.0, 1e-9);
        close(a.factors[1].f.unwrap(), 4.0, 1e-9);
        close(a.factors[0].rho, 100.0 * 32.0 / 56.0, 1e-9);
        close(a.factors[1].rho, 100.0 * 12.0 / 56.0, 1e-9);
        close(a.error.rho, 100.0 * 12.0 / 56.0, 1e-9);
        // Optimum A2 B2: m = 14, A2 mean 17, B2 mean 16: 14 + 3 + 2 = 19.
        let e = Effects::compute(&oa, &[0, 1], &y).unwrap();
        let (levels, eta) = e.optimum(&[0, 1]).unwrap();
        assert_eq!(levels, vec![1, 1]);
        close(eta, 19.0, 1e-9);
    }

    #[test]
    fn design_errors() {
        let oa = ArrayKind::L4.build();
        assert!(Effects::compute(&oa, &[0], &[1.0, 2.0]).is_err());
        assert!(Effects::compute(&oa, &[5], &[1.0; 4]).is_err());
        assert!(Effects::compute(&oa, &[0, 0], &[1.0; 4]).is_err());
        assert!(Anova::compute(&oa, &[0], &[1.0; 4], &Pooling::Factors(vec![2])).is_err());
        let e = Effects::compute(&oa, &[0], &[1.0; 4]).unwrap();
        assert!(e.predict(&[Some(2)]).is_err());
    }
}
