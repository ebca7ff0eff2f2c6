//! The Taguchi analysis of a finished lab run: the responses of each inner row over the
//! outer array, the SN ratio and mean per row, level means (response tables), ANOVA of the
//! SN ratio with pooled error, and the predicted optimum.

use anyhow::{bail, Context};
use kakusan_lab::{Anova, Effects, Experiment, OrthogonalArray, Pooling};

use super::results::Results;

/// Everything the report shows.
#[derive(Debug)]
pub struct LabAnalysis {
    /// `responses[row][noise]`.
    pub responses: Vec<Vec<f64>>,
    /// SN ratio (dB) per inner row.
    pub sn: Vec<f64>,
    /// Mean response per inner row (the sensitivity).
    pub means: Vec<f64>,
    pub sn_effects: Effects,
    pub mean_effects: Effects,
    /// ANOVA of the SN ratio; factors with the smallest effects pooled into the error until
    /// it holds half the degrees of freedom.
    pub anova: Anova,
    /// The level of every factor with the highest SN ratio.
    pub best_levels: Vec<usize>,
    /// Factors not pooled: the ones the prediction counts on.
    pub used: Vec<usize>,
    /// Predicted SN ratio and mean response at `best_levels` (additive model).
    pub predicted_sn: f64,
    pub predicted_mean: f64,
    /// 95 % confidence half-width of the predicted SN ratio, when the error has degrees of
    /// freedom.
    pub interval: Option<f64>,
}

/// Analyses `results` of `experiment` on its inner array `oa` (factor `f` on column
/// `cols[f]`), over `noises` outer conditions. Every picture must have been measured.
pub fn analyse(
    experiment: &Experiment,
    oa: &OrthogonalArray,
    cols: &[usize],
    noises: usize,
    results: &Results,
) -> anyhow::Result<LabAnalysis> {
    let mut responses = Vec::with_capacity(oa.runs());
    for row in 0..oa.runs() {
        let mut ys = Vec::with_capacity(noises);
        for noise in 0..noises {
            match results.get(row, noise) {
                Some(r) => ys.push(r.response),
                None => bail!(
                    "row {} noise {} has not been measured yet",
                    row + 1,
                    noise + 1
                ),
            }
        }
        responses.push(ys);
    }
    let sn_type = experiment.response.sn;
    let sn = responses
        .iter()
        .enumerate()
        .map(|(row, ys)| {
            sn_type.sn(ys).with_context(|| {
                format!(
                    "the {} SN ratio of row {} ({:?})",
                    sn_type.name(),
                    row + 1,
                    ys
                )
            })
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let means: Vec<f64> = responses
        .iter()
        .map(|ys| ys.iter().sum::<f64>() / ys.len() as f64)
        .collect();
    let levels: Vec<usize> = experiment.factors.iter().map(|f| f.levels.len()).collect();
    let sn_effects = Effects::compute_with_levels(oa, cols, &levels, &sn)?;
    let mean_effects = Effects::compute_with_levels(oa, cols, &levels, &means)?;
    let anova = Anova::compute_with_levels(oa, cols, &levels, &sn, &Pooling::HalfDof)?;
    let used: Vec<usize> = (0..levels.len())
        .filter(|&f| !anova.factors[f].pooled)
        .collect();
    let (best_levels, predicted_sn) = sn_effects.optimum(&used)?;
    let chosen: Vec<Option<usize>> = (0..levels.len())
        .map(|f| used.contains(&f).then_some(best_levels[f]))
        .collect();
    let predicted_mean = mean_effects.predict(&chosen)?;
    let interval = anova.confidence_interval(&used, 0.05, None).ok();
    Ok(LabAnalysis {
        responses,
        sn,
        means,
        sn_effects,
        mean_effects,
        anova,
        best_levels,
        used,
        predicted_sn,
        predicted_mean,
        interval,
    })
}

/// The text of level `level` of factor `f`, as the experiment file gives it.
pub fn level_label(experiment: &Experiment, f: usize, level: usize) -> String {
    experiment.factors[f]
        .levels
        .get(level)
        .map(|v| kakusan_lab::experiment::level_text(v).unwrap_or_else(|| v.to_string()))
        .unwrap_or_default()
}

/// The terminal summary: SN per row, the SN response table, ANOVA and the optimum.
pub fn summary(experiment: &Experiment, a: &LabAnalysis) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{} rows x {} noise conditions, response {} ({})\n",
        a.sn.len(),
        a.responses.first().map_or(0, Vec::len),
        experiment.response.measure.name(),
        experiment.response.sn.name()
    ));
    s.push_str("row   mean      SN (dB)\n");
    for (i, (m, sn)) in a.means.iter().zip(&a.sn).enumerate() {
        s.push_str(&format!("{:>3}  {:>7.4}  {:>8.3}\n", i + 1, m, sn));
    }
    s.push_str("\nSN response table (dB): level means, delta, rank\n");
    let ranges = a.sn_effects.ranges();
    let ranks = ranks(&ranges);
    for (f, factor) in experiment.factors.iter().enumerate() {
        let means: Vec<String> = a.sn_effects.level_means[f]
            .iter()
            .map(|m| format!("{m:>8.3}"))
            .collect();
        s.push_str(&format!(
            "{:<24} {}  delta {:>6.3}  rank {}\n",
            factor.name,
            means.join(" "),
            ranges[f],
            ranks[f]
        ));
    }
    s.push_str("\nANOVA of the SN ratio (pooled factors marked *)\n");
    s.push_str("factor                      S       f        V        F   rho %\n");
    for (f, row) in a.anova.factors.iter().enumerate() {
        s.push_str(&format!(
            "{:<24}{}{:>9.3} {:>5} {:>8.3} {:>8} {:>7.1}\n",
            experiment.factors[f].name,
            if row.pooled { "*" } else { " " },
            row.ss,
            row.dof,
            row.var,
            row.f.map_or("-".into(), |v| format!("{v:.2}")),
            row.rho
        ));
    }
    s.push_str(&format!(
        "{:<25}{:>9.3} {:>5} {:>8.3} {:>8} {:>7.1}\n",
        "error (pooled)",
        a.anova.error.ss,
        a.anova.error.dof,
        a.anova.error.var,
        "",
        a.anova.error.rho
    ));
    s.push_str(&format!(
        "{:<25}{:>9.3} {:>5}\n",
        "total", a.anova.total_ss, a.anova.total_dof
    ));
    s.push_str("\noptimum (highest SN level of every factor):\n");
    for (f, factor) in experiment.factors.iter().enumerate() {
        s.push_str(&format!(
            "  {:<24} level {}: {}{}\n",
            factor.name,
            a.best_levels[f] + 1,
            level_label(experiment, f, a.best_levels[f]),
            if a.used.contains(&f) {
                ""
            } else {
                " (pooled: not counted)"
            }
        ));
    }
    s.push_str(&format!(
        "predicted SN {:.3} dB{}, predicted mean response {:.4}\n",
        a.predicted_sn,
        a.interval
            .map_or(String::new(), |ci| format!(" ± {ci:.3} (95 %)")),
        a.predicted_mean
    ));
    s
}

/// Rank 1 for the largest delta.
pub fn ranks(deltas: &[f64]) -> Vec<usize> {
    deltas
        .iter()
        .map(|d| 1 + deltas.iter().filter(|o| *o > d).count())
        .collect()
}
