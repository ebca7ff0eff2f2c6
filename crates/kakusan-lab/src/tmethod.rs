//! T-method metrics (the RT-method style "T法(2)" of prompt-lab.md), the Mahalanobis distance
//! of the MT method, and the T-method (1) integrated estimate.

/// Why a unit space or an estimate cannot be built or used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TMethodError {
    #[error("the unit space has no reference samples")]
    Empty,
    #[error("sample {index} has {got} features, the unit space has {want}")]
    Length {
        index: usize,
        got: usize,
        want: usize,
    },
    #[error(
        "T-method metrics need at least 2 features per sample (V_e divides by k - 1), got {0}"
    )]
    TooFewFeatures(usize),
    #[error("the unit-space means are all 0 (r = 0): the sensitivity beta is undefined")]
    ZeroMeans,
    #[error("sample {index} has a feature that is not a finite number")]
    NotFinite { index: usize },
    #[error("a distance over {vars} variables needs at least {need} reference samples, {have} given: add {more} more")]
    TooFew {
        vars: usize,
        need: usize,
        have: usize,
        more: usize,
    },
    #[error("the reference samples' {what}: their covariance is singular; add at least 1 more reference sample that differs from the others in it")]
    Singular { what: String },
    #[error("{0}")]
    Signal(String),
}

fn check_rows(rows: &[Vec<f64>], k: usize) -> Result<(), TMethodError> {
    for (index, r) in rows.iter().enumerate() {
        if r.len() != k {
            return Err(TMethodError::Length {
                index,
                got: r.len(),
                want: k,
            });
        }
        if r.iter().any(|v| !v.is_finite()) {
            return Err(TMethodError::NotFinite { index });
        }
    }
    Ok(())
}

fn column_means(rows: &[Vec<f64>], k: usize) -> Vec<f64> {
    let n = rows.len() as f64;
    (0..k)
        .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n)
        .collect()
}

/// A Mahalanobis space (MT method): the mean, the population standard deviations and the
/// inverse correlation matrix of reference samples. D² = zᵀR⁻¹z / k with z the standardised
/// sample, so D² averages exactly 1 over the references themselves.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MahalanobisSpace {
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    /// Inverse correlation matrix, row-major k×k.
    pub inv_corr: Vec<f64>,
}

/// Relative pivot below which the correlation matrix counts as singular: correlation entries
/// are O(1), so a pivot of 1e-10 means the variables are collinear to ~10 digits.
const SINGULAR_PIVOT: f64 = 1e-10;

impl MahalanobisSpace {
    pub fn fit(samples: &[Vec<f64>]) -> Result<Self, TMethodError> {
        let first = samples.first().ok_or(TMethodError::Empty)?;
        let k = first.len();
        check_rows(samples, k)?;
        let n = samples.len();
        if n < k + 1 {
            return Err(TMethodError::TooFew {
                vars: k,
                need: k + 1,
                have: n,
                more: k + 1 - n,
            });
        }
        let mean = column_means(samples, k);
        let nf = n as f64;
        let sd: Vec<f64> = (0..k)
            .map(|j| {
                (samples
                    .iter()
                    .map(|r| (r[j] - mean[j]).powi(2))
                    .sum::<f64>()
                    / nf)
                    .sqrt()
            })
            .collect();
        for (j, &s) in sd.iter().enumerate() {
            if s <= 1e-12 * mean[j].abs().max(1.0) {
                return Err(TMethodError::Singular {
                    what: format!("variable {} is the same in all of them", j + 1),
                });
            }
        }
        let z: Vec<Vec<f64>> = samples
            .iter()
            .map(|r| (0..k).map(|j| (r[j] - mean[j]) / sd[j]).collect())
            .collect();
        let mut corr = vec![0.0; k * k];
        for a in 0..k {
            for b in 0..k {
                corr[a * k + b] = z.iter().map(|r| r[a] * r[b]).sum::<f64>() / nf;
            }
        }
        let inv_corr = invert(&corr, k).ok_or_else(|| TMethodError::Singular {
            what: "variables are linearly dependent".to_string(),
        })?;
        Ok(MahalanobisSpace { mean, sd, inv_corr })
    }

    pub fn vars(&self) -> usize {
        self.mean.len()
    }

    /// D² / k of one sample.
    pub fn d2(&self, x: &[f64]) -> Result<f64, TMethodError> {
        let k = self.vars();
        check_rows(std::slice::from_ref(&x.to_vec()), k)?;
        let z: Vec<f64> = (0..k).map(|j| (x[j] - self.mean[j]) / self.sd[j]).collect();
        let mut q = 0.0;
        for a in 0..k {
            for b in 0..k {
                q += z[a] * self.inv_corr[a * k + b] * z[b];
            }
        }
        Ok(q / k as f64)
    }
}

/// Gauss-Jordan inversion with partial pivoting; `None` when singular.
fn invert(m: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut a = m.to_vec();
    let mut inv = vec![0.0; k * k];
    for i in 0..k {
        inv[i * k + i] = 1.0;
    }
    for col in 0..k {
        let piv =
            (col..k).max_by(|&x, &y| a[x * k + col].abs().total_cmp(&a[y * k + col].abs()))?;
        if a[piv * k + col].abs() < SINGULAR_PIVOT {
            return None;
        }
        if piv != col {
            for j in 0..k {
                a.swap(piv * k + j, col * k + j);
                inv.swap(piv * k + j, col * k + j);
            }
        }
        let p = a[col * k + col];
        for j in 0..k {
            a[col * k + j] /= p;
            inv[col * k + j] /= p;
        }
        for row in 0..k {
            if row != col {
                let f = a[row * k + col];
                if f != 0.0 {
                    for j in 0..k {
                        a[row * k + j] -= f * a[col * k + j];
                        inv[row * k + j] -= f * inv[col * k + j];
                    }
                }
            }
        }
    }
    Some(inv)
}

/// The T-method numbers of one sample against a unit space.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TScore {
    /// Y1 = β = L / r.
    pub beta: f64,
    /// Y2 = √V_e.
    pub noise: f64,
    /// V_e = (S_T − S_β) / (k − 1).
    pub ve: f64,
    /// η = 10·log10(β²/V_e) dB; `None` when V_e = 0 (a sample exactly proportional to the
    /// unit-space means).
    pub sn_db: Option<f64>,
}

/// A unit space: the feature means m_j of reference samples that are "as intended", and the
/// Mahalanobis space of their (Y1, Y2).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnitSpace {
    pub means: Vec<f64>,
    /// r = Σ m_j².
    pub r: f64,
    pub distance: MahalanobisSpace,
}

impl UnitSpace {
    /// Builds the unit space from reference feature vectors (at least 3, for the 2×2
    /// covariance of (Y1, Y2)).
    pub fn build(reference: &[Vec<f64>]) -> Result<Self, TMethodError> {
        let first = reference.first().ok_or(TMethodError::Empty)?;
        let k = first.len();
        if k < 2 {
            return Err(TMethodError::TooFewFeatures(k));
        }
        check_rows(reference, k)?;
        let means = column_means(reference, k);
        let r: f64 = means.iter().map(|m| m * m).sum();
        if r == 0.0 {
            return Err(TMethodError::ZeroMeans);
        }
        let y: Vec<Vec<f64>> = reference
            .iter()
            .map(|x| {
                let s = score(&means, r, x);
                vec![s.beta, s.noise]
            })
            .collect();
        let distance = MahalanobisSpace::fit(&y).map_err(|e| match e {
            TMethodError::Singular { what } => TMethodError::Singular {
                what: format!(
                    "(Y1, Y2) are degenerate: {}",
                    what.replace("variable 1", "Y1 (beta)")
                        .replace("variable 2", "Y2 (noise)")
                ),
            },
            other => other,
        })?;
        Ok(UnitSpace { means, r, distance })
    }

    /// Y1, Y2 and η of one sample.
    pub fn score(&self, x: &[f64]) -> Result<TScore, TMethodError> {
        check_rows(std::slice::from_ref(&x.to_vec()), self.means.len())?;
        Ok(score(&self.means, self.r, x))
    }

    /// D² = (y − ȳ)ᵀC⁻¹(y − ȳ)/2 of the sample's (Y1, Y2); D = √D² is "how unlike the good
    /// images" it is (≈ 1 on average for the unit space itself).
    pub fn d2(&self, x: &[f64]) -> Result<f64, TMethodError> {
        let s = self.score(x)?;
        self.distance.d2(&[s.beta, s.noise])
    }
}

fn score(m: &[f64], r: f64, x: &[f64]) -> TScore {
    let k = m.len() as f64;
    let l: f64 = m.iter().zip(x).map(|(a, b)| a * b).sum();
    let st: f64 = x.iter().map(|v| v * v).sum();
    let sb = l * l / r;
    // Rounding can make S_T − S_β slightly negative for a sample proportional to m.
    let ve = ((st - sb) / (k - 1.0)).max(0.0);
    let beta = l / r;
    TScore {
        beta,
        noise: ve.sqrt(),
        ve,
        sn_db: (ve > 0.0).then(|| 10.0 * (beta * beta / ve).log10()),
    }
}

/// T-method (1): predicts a number (the signal M) from features. Fitted from a unit space
/// (samples with their signal, giving the centre x̄_j and M̄) and signal samples; per feature
/// j a proportional coefficient β_j and an SN ratio η_j (ratio, not dB) over the
/// unit-space-centred data; the estimate is M̄ + Σ η_j·(x_j − x̄_j)/β_j / Σ η_j.
#[derive(Debug, Clone, PartialEq)]
pub struct TMethod1 {
    pub centre: Vec<f64>,
    pub signal_centre: f64,
    pub beta: Vec<f64>,
    /// η_j = (S_β − V_e)/(r·V_e) where S_β > V_e, else 0 (the feature is not used).
    pub eta: Vec<f64>,
}

impl TMethod1 {
    pub fn fit(
        unit: &[Vec<f64>],
        unit_signal: &[f64],
        samples: &[Vec<f64>],
        signal: &[f64],
    ) -> Result<Self, TMethodError> {
        let first = unit.first().ok_or(TMethodError::Empty)?;
        let k = first.len();
        check_rows(unit, k)?;
        check_rows(samples, k)?;
        if unit_signal.len() != unit.len() || signal.len() != samples.len() {
            return Err(TMethodError::Signal(
                "one signal value per sample is needed".into(),
            ));
        }
        if samples.len() < 2 {
            return Err(TMethodError::Signal(format!(
                "T-method (1) needs at least 2 signal samples (V_e divides by l - 1), got {}",
                samples.len()
            )));
        }
        let centre = column_means(unit, k);
        let signal_centre = unit_signal.iter().sum::<f64>() / unit_signal.len() as f64;
        let m: Vec<f64> = signal.iter().map(|s| s - signal_centre).collect();
        let r: f64 = m.iter().map(|v| v * v).sum();
        if r == 0.0 {
            return Err(TMethodError::Signal(
                "every signal sample has the unit-space signal: r = 0".into(),
            ));
        }
        let l1 = (samples.len() - 1) as f64;
        let mut beta = Vec::with_capacity(k);
        let mut eta = Vec::with_capacity(k);
        for j in 0..k {
            let x: Vec<f64> = samples.iter().map(|s| s[j] - centre[j]).collect();
            let lj: f64 = m.iter().zip(&x).map(|(a, b)| a * b).sum();
            let st: f64 = x.iter().map(|v| v * v).sum();
            let sb = lj * lj / r;
            let ve = ((st - sb) / l1).max(0.0);
            beta.push(lj / r);
            eta.push(if sb > ve && ve > 0.0 {
                (sb - ve) / (r * ve)
            } else {
                0.0
            });
        }
        if eta.iter().all(|&e| e == 0.0) {
            return Err(TMethodError::Signal(
                "no feature is proportional to the signal (or all are exactly, with V_e = 0)"
                    .into(),
            ));
        }
        Ok(TMethod1 {
            centre,
            signal_centre,
            beta,
            eta,
        })
    }

    /// The integrated estimate M̂ of one sample.
    pub fn estimate(&self, x: &[f64]) -> Result<f64, TMethodError> {
        check_rows(std::slice::from_ref(&x.to_vec()), self.centre.len())?;
        let mut num = 0.0;
        let mut den = 0.0;
        for (j, &xj) in x.iter().enumerate() {
            if self.eta[j] > 0.0 {
                num += self.eta[j] * (xj - self.centre[j]) / self.beta[j];
                den += self.eta[j];
            }
        }
        Ok(self.signal_centre + num / den)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tolerance: the expected values are exact fractions evaluated in f64 (1e-12) or
    // hand-rounded to 6 digits (1e-5).
    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b} (tol {tol})");
    }

    #[test]
    fn beta_and_noise_by_hand() {
        // Hand calculation: references (1,2,3), (3,2,1), (2,1,2), (2,3,2) give the
        // unit-space means m = (2, 2, 2), r = 12.
        // x = (1, 2, 3): L = 12, β = 1, S_T = 14, S_β = 144/12 = 12, S_e = 2, V_e = 1,
        // Y2 = 1, η = 10·log10(1/1) = 0 dB.
        // x = (2, 4, 6): β = 2, S_T = 56, S_β = 48, V_e = 4, Y2 = 2, η = 0 dB.
        // x = (4, 4, 4): β = 2, V_e = 0, η undefined.
        let refs = vec![
            vec![1.0, 2.0, 3.0],
            vec![3.0, 2.0, 1.0],
            vec![2.0, 1.0, 2.0],
            vec![2.0, 3.0, 2.0],
        ];
        let us = UnitSpace::build(&refs).unwrap();
        assert_eq!(us.means, vec![2.0, 2.0, 2.0]);
        close(us.r, 12.0, 1e-12);
        let s = us.score(&[1.0, 2.0, 3.0]).unwrap();
        close(s.beta, 1.0, 1e-12);
        close(s.ve, 1.0, 1e-12);
        close(s.noise, 1.0, 1e-12);
        close(s.sn_db.unwrap(), 0.0, 1e-12);
        let s = us.score(&[2.0, 4.0, 6.0]).unwrap();
        close(s.beta, 2.0, 1e-12);
        close(s.noise, 2.0, 1e-12);
        let s = us.score(&[4.0, 4.0, 4.0]).unwrap();
        close(s.beta, 2.0, 1e-12);
        assert_eq!(s.sn_db, None);
        // (Y1, Y2) of the references: (1, 1), (1, 1), (5/6, √(1/3)), (7/6, √(1/3)):
        // e.g. (2,1,2): L = 10, β = 10/12, S_T = 9, S_β = 100/12, V_e = (9 − 25/3)/2 = 1/3.
        // Over the unit space, D² averages exactly 1.
        let mean_d2: f64 = refs.iter().map(|x| us.d2(x).unwrap()).sum::<f64>() / 4.0;
        close(mean_d2, 1.0, 1e-12);
        // A sample far from the references in β is far in D.
        assert!(us.d2(&[6.0, 6.0, 6.5]).unwrap() > 10.0);
    }

    #[test]
    fn mahalanobis_by_hand() {
        // Hand calculation: samples (1,0), (−1,0), (0,1), (0,−1), (1,1), (−1,−1):
        // mean 0, population var 4/6 each, cov 2/6, C = [[2/3, 1/3], [1/3, 2/3]],
        // det 1/3, C⁻¹ = [[2, −1], [−1, 2]].
        // (1, −1): [1, −1]·C⁻¹·[1, −1] = 6, /2 = 3.  (1, 1): 2, /2 = 1.  (2, 0): 8/2 = 4.
        let s = vec![
            vec![1.0, 0.0],
            vec![-1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.0, -1.0],
            vec![1.0, 1.0],
            vec![-1.0, -1.0],
        ];
        let m = MahalanobisSpace::fit(&s).unwrap();
        close(m.d2(&[1.0, -1.0]).unwrap(), 3.0, 1e-12);
        close(m.d2(&[1.0, 1.0]).unwrap(), 1.0, 1e-12);
        close(m.d2(&[2.0, 0.0]).unwrap(), 4.0, 1e-12);
        close(m.d2(&[0.0, 0.0]).unwrap(), 0.0, 1e-12);
        let mean: f64 = s.iter().map(|x| m.d2(x).unwrap()).sum::<f64>() / 6.0;
        close(mean, 1.0, 1e-12);
    }

    #[test]
    fn singular_spaces_say_what_is_missing() {
        let e = MahalanobisSpace::fit(&[vec![0.0, 1.0], vec![1.0, 0.0]]).unwrap_err();
        assert_eq!(
            e,
            TMethodError::TooFew {
                vars: 2,
                need: 3,
                have: 2,
                more: 1
            }
        );
        assert!(e.to_string().contains("add 1 more"), "{e}");
        let e =
            MahalanobisSpace::fit(&[vec![0.0, 0.0], vec![1.0, 1.0], vec![2.0, 2.0]]).unwrap_err();
        assert!(e.to_string().contains("linearly dependent"), "{e}");
        // Identical reference images: β = 1 and Y2 = 0 for all of them.
        let refs = vec![vec![1.0, 2.0, 3.0]; 5];
        let e = UnitSpace::build(&refs).unwrap_err();
        assert!(e.to_string().contains("Y1 (beta)"), "{e}");
        let e = UnitSpace::build(&[vec![1.0, 2.0]]).unwrap_err();
        assert!(e.to_string().contains("add 2 more"), "{e}");
        assert_eq!(
            UnitSpace::build(&[vec![1.0]]),
            Err(TMethodError::TooFewFeatures(1))
        );
        assert_eq!(
            UnitSpace::build(&vec![vec![0.0, 0.0]; 3]),
            Err(TMethodError::ZeroMeans)
        );
        assert!(matches!(
            UnitSpace::build(&[vec![1.0, 2.0], vec![1.0]]),
            Err(TMethodError::Length { index: 1, .. })
        ));
    }

    #[test]
    fn t_method_1_by_hand() {
        // Hand calculation: unit space x̄ = (0, 0), M̄ = 0. Signals M = 1, 2, 3 (r = 14) with
        // item 1 = 1, 2, 3.5 and item 2 = 2, 4, 5.
        // Item 1: L = 15.5, β1 = 15.5/14, S_T = 17.25, S_β = 240.25/14,
        //   S_e = 1.25/14, V_e = 0.625/14, η1 = (239.625/14)/(14·0.625/14) = 239.625/8.75.
        // Item 2: L = 25, β2 = 25/14, S_T = 45, S_β = 625/14, S_e = 5/14, V_e = 2.5/14,
        //   η2 = (622.5/14)/2.5 = 622.5/35.
        // x = (2.2, 3.6): M̂ = (η1·2.2/β1 + η2·3.6/β2)/(η1 + η2) ≈ 1.998474.
        let unit = vec![vec![-1.0, 1.0], vec![1.0, -1.0]];
        let t = TMethod1::fit(
            &unit,
            &[0.0, 0.0],
            &[vec![1.0, 2.0], vec![2.0, 4.0], vec![3.5, 5.0]],
            &[1.0, 2.0, 3.0],
        )
        .unwrap();
        let (b1, b2) = (15.5 / 14.0, 25.0 / 14.0);
        let (e1, e2) = (239.625 / 8.75, 622.5 / 35.0);
        close(t.beta[0], b1, 1e-12);
        close(t.beta[1], b2, 1e-12);
        close(t.eta[0], e1, 1e-9);
        close(t.eta[1], e2, 1e-9);
        let want = (e1 * 2.2 / b1 + e2 * 3.6 / b2) / (e1 + e2);
        close(t.estimate(&[2.2, 3.6]).unwrap(), want, 1e-9);
        close(want, 1.998474, 1e-5);
        assert!(TMethod1::fit(&unit, &[0.0, 0.0], &[vec![1.0, 2.0]], &[1.0]).is_err());
    }
}
