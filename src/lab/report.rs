//! `report.html` of a lab run: the design, the response table, the SN ratio per run, the
//! main-effect plots, ANOVA, the predicted optimum (and its confirmation, once run) and the
//! pictures of every run: a page a quality engineer can show.

use std::fmt::Write as _;

use kakusan_lab::{Experiment, OrthogonalArray};

use super::analysis::{level_label, ranks, LabAnalysis};
use super::confirm::Confirmation;
use super::results::Results;

/// What the page is about besides the analysis.
pub struct ReportInput<'a> {
    pub experiment: &'a Experiment,
    pub oa: &'a OrthogonalArray,
    pub array_name: String,
    pub model: String,
    pub results: &'a Results,
    pub analysis: &'a LabAnalysis,
    pub confirmation: Option<&'a Confirmation>,
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}\
h1{margin-bottom:0}h2{margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}\
th{background:#f0f0f0}td.t,th.t{text-align:left}tr.best td{background:#fff3d6}\
.muted{color:#777}td.pics{white-space:nowrap;text-align:left}img.px{image-rendering:pixelated;width:64px;height:64px;margin:1px}\
.box{background:#f7f7f7;padding:.8em 1em;border-left:4px solid #1f5ab4}";

/// The whole page.
pub fn render(input: &ReportInput) -> String {
    let e = input.experiment;
    let a = input.analysis;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&e.name)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"muted\">kakusan lab: Taguchi parameter design of a prompt</p><p>{}</p>",
        esc(&e.name),
        esc(&e.description)
    );
    let noises = a.responses.first().map_or(0, Vec::len);
    let _ = write!(
        h,
        "<div class=\"box\"><b>Template</b>: <code>{}</code><br><b>Inner array</b>: {} ({} runs), \
         <b>outer array</b>: {} noise conditions (seeds {}), <b>{} pictures</b><br>\
         <b>Response</b>: {} &nbsp; <b>SN ratio</b>: {} &nbsp; <b>Model</b>: {}</div>",
        esc(&e.template),
        esc(&input.array_name),
        input.oa.runs(),
        noises,
        esc(&format!("{:?}", e.noise.seeds)),
        input.oa.runs() * noises,
        e.response.measure.name(),
        e.response.sn.name(),
        esc(&input.model)
    );

    // Factors and levels.
    h.push_str(
        "<h2>Control factors</h2><table><tr><th class=\"t\">factor</th><th class=\"t\">varies</th>",
    );
    let max_levels = e.factors.iter().map(|f| f.levels.len()).max().unwrap_or(0);
    for l in 0..max_levels {
        let _ = write!(h, "<th class=\"t\">level {}</th>", l + 1);
    }
    h.push_str("</tr>");
    for (f, factor) in e.factors.iter().enumerate() {
        let varies = match (&factor.slot, factor.setting) {
            (Some(slot), _) => format!("slot {{{slot}}}"),
            (None, Some(s)) => format!("setting {}", s.name()),
            _ => String::new(),
        };
        let _ = write!(
            h,
            "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td>",
            esc(&factor.name),
            esc(&varies)
        );
        for l in 0..max_levels {
            let _ = write!(h, "<td class=\"t\">{}</td>", esc(&level_label(e, f, l)));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");

    // Design, responses and SN per run, with the pictures.
    h.push_str("<h2>Runs: design, responses and SN ratio</h2><table><tr><th>run</th>");
    for factor in &e.factors {
        let _ = write!(h, "<th>{}</th>", esc(&factor.name));
    }
    for (i, seed) in outer_seeds(input).iter().enumerate() {
        let _ = write!(h, "<th>N{} (seed {seed})</th>", i + 1);
    }
    h.push_str("<th>mean</th><th>SN (dB)</th><th class=\"t\">pictures</th></tr>");
    let best_row = super::argmax(&a.sn);
    let specs = e.runs().unwrap_or_default();
    for (row, ys) in a.responses.iter().enumerate() {
        let class = if row == best_row {
            " class=\"best\""
        } else {
            ""
        };
        let _ = write!(h, "<tr{class}><td>{}</td>", row + 1);
        if let Some(spec) = specs.iter().find(|s| s.row == row) {
            for &l in &spec.levels {
                let _ = write!(h, "<td>{}</td>", l + 1);
            }
        }
        for y in ys {
            let _ = write!(h, "<td>{y:.4}</td>");
        }
        let _ = write!(
            h,
            "<td>{:.4}</td><td><b>{:.3}</b></td><td class=\"pics\">",
            a.means[row], a.sn[row]
        );
        for noise in 0..ys.len() {
            if let Some(r) = input.results.get(row, noise) {
                let _ = write!(
                    h,
                    "<img class=\"px\" src=\"{}\" title=\"{}\">",
                    esc(&r.file),
                    esc(&r.prompt)
                );
            }
        }
        h.push_str("</td></tr>");
    }
    h.push_str("</table><p class=\"muted\">Highlighted: the best run of the array. Hover a picture for its prompt; every PNG carries its generation parameters.</p>");

    // Response tables.
    for (title, eff, unit) in [
        ("SN ratio response table", &a.sn_effects, " (dB)"),
        ("Mean response table", &a.mean_effects, ""),
    ] {
        let ranges = eff.ranges();
        let rk = ranks(&ranges);
        let _ = write!(
            h,
            "<h2>{title}{unit}</h2><table><tr><th class=\"t\">factor</th>"
        );
        for l in 0..max_levels {
            let _ = write!(h, "<th>level {}</th>", l + 1);
        }
        h.push_str("<th>delta</th><th>rank</th></tr>");
        for (f, factor) in e.factors.iter().enumerate() {
            let _ = write!(h, "<tr><td class=\"t\">{}</td>", esc(&factor.name));
            for l in 0..max_levels {
                match eff.level_means[f].get(l) {
                    Some(m) => {
                        let _ = write!(h, "<td>{m:.3}</td>");
                    }
                    None => h.push_str("<td></td>"),
                }
            }
            let _ = write!(h, "<td>{:.3}</td><td>{}</td></tr>", ranges[f], rk[f]);
        }
        let _ = write!(
            h,
            "</table><p class=\"muted\">grand mean {:.3}</p>",
            eff.grand_mean
        );
    }
    h.push_str("<h2>Main-effect plots</h2><p><img src=\"effects-sn.png\" alt=\"SN ratio main effects\"></p><p><img src=\"effects-mean.png\" alt=\"mean response main effects\"></p><p class=\"muted\">Red: the level with the highest value. Dashed: the grand mean.</p>");

    // ANOVA.
    h.push_str("<h2>ANOVA of the SN ratio</h2><table><tr><th class=\"t\">source</th><th>S</th><th>f</th><th>V</th><th>F</th><th>p</th><th>S'</th><th>&rho; (%)</th></tr>");
    for (f, row) in a.anova.factors.iter().enumerate() {
        let name = if row.pooled {
            format!("({}) pooled", e.factors[f].name)
        } else {
            e.factors[f].name.clone()
        };
        let _ = write!(
            h,
            "<tr><td class=\"t\">{}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.1}</td></tr>",
            esc(&name),
            row.ss,
            row.dof,
            row.var,
            row.f.map_or("".into(), |v| format!("{v:.2}")),
            row.p.map_or("".into(), |v| format!("{v:.3}")),
            row.pure_ss,
            row.rho
        );
    }
    let err = &a.anova.error;
    let _ = write!(
        h,
        "<tr><td class=\"t\">error (pooled)</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td></td><td></td><td>{:.3}</td><td>{:.1}</td></tr>\
         <tr><th class=\"t\">total</th><th>{:.3}</th><th>{}</th><th></th><th></th><th></th><th></th><th>100.0</th></tr></table>\
         <p class=\"muted\">Factors with the smallest sums of squares are pooled into the error until it holds half the degrees of freedom.</p>",
        err.ss, err.dof, err.var, err.pure_ss, err.rho, a.anova.total_ss, a.anova.total_dof
    );

    // Optimum and confirmation.
    h.push_str("<h2>Optimum and confirmation</h2><table><tr><th class=\"t\">factor</th><th class=\"t\">best level</th><th class=\"t\">counted in the prediction</th></tr>");
    for (f, factor) in e.factors.iter().enumerate() {
        let _ =
            write!(
            h,
            "<tr><td class=\"t\">{}</td><td class=\"t\">{}: {}</td><td class=\"t\">{}</td></tr>",
            esc(&factor.name),
            a.best_levels[f] + 1,
            esc(&level_label(e, f, a.best_levels[f])),
            if a.used.contains(&f) { "yes" } else { "no (pooled)" }
        );
    }
    h.push_str("</table>");
    let ci = a
        .interval
        .map_or(String::new(), |c| format!(" &plusmn; {c:.3}"));
    let _ = write!(
        h,
        "<p>Predicted SN ratio at the optimum: <b>{:.3} dB</b>{ci} (95 %); predicted mean response {:.4}. Best run of the array: run {} at {:.3} dB.</p>",
        a.predicted_sn,
        a.predicted_mean,
        best_row + 1,
        a.sn[best_row]
    );
    match input.confirmation {
        Some(c) => {
            let verdict = match a.interval {
                Some(ci) if (c.sn - a.predicted_sn).abs() <= ci => {
                    "inside the interval: the additive model holds"
                }
                Some(_) => "outside the interval: interactions between factors matter",
                None => "no interval (the error has no degrees of freedom)",
            };
            let _ = write!(
                h,
                "<div class=\"box\">Confirmation run at the optimum, prompt <code>{}</code>: observed SN <b>{:.3} dB</b> (mean {:.4}) against predicted {:.3} dB, {verdict}.<br>",
                esc(&c.prompt),
                c.sn,
                c.mean,
                a.predicted_sn
            );
            for file in &c.files {
                let _ = write!(h, "<img class=\"px\" src=\"{}\">", esc(file));
            }
            h.push_str("</div>");
        }
        None => h.push_str(
            "<p class=\"muted\">Not confirmed yet: <code>kakusan lab confirm EXPERIMENT.toml</code> draws the optimum over the same noise conditions.</p>",
        ),
    }
    h.push_str("</body></html>\n");
    h
}

fn outer_seeds(input: &ReportInput) -> Vec<u64> {
    input.experiment.outer().iter().map(|n| n.seed).collect()
}
