//! `kakusan lab optimize`: a reward-driven search over the template's factor levels, the
//! response as the reward. Thompson sampling (on the additive model fitted jointly, started
//! from the orthogonal array's rows) against random search and the orthogonal array, at the
//! same number of pictures, each randomised strategy repeated; at checkpoints every
//! strategy's recommended combination is valued by its mean response over all noise
//! conditions. Writes `optimize.csv` and the reward-per-picture plot `optimize.png`, and says
//! how many pictures each strategy needed to come within the tolerance of the best
//! combination found (by default the standard error of a value: two combinations closer
//! than that cannot be told apart with these noise conditions).

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kakusan_core::rng::TorchCpuGenerator;

use super::bandit::{additive_best, FactorBandit, RandomSearch};
use super::curve_plot::{self, Series};
use super::draws::{levels_key, Draws};
use super::Lab;
use crate::cli::LabOptimizeArgs;

const METHODS: [&str; 3] = ["orthogonal array", "random search", "thompson sampling"];

/// Responses of (levels, noise condition), drawn once and cached in `draws.csv`.
struct Oracle<'a> {
    lab: &'a mut Lab,
    draws: Draws,
    bar: ProgressBar,
}

impl Oracle<'_> {
    fn response(&mut self, levels: &[usize], noise: usize) -> anyhow::Result<f64> {
        if let Some(r) = self.draws.get(levels, noise) {
            return Ok(r);
        }
        let specs = self.lab.experiment.runs_at(0, levels)?;
        let spec = specs
            .get(noise)
            .with_context(|| format!("no noise condition {}", noise + 1))?;
        let file = format!("images/o{}-n{:02}.png", levels_key(levels), noise + 1);
        let path = self.lab.dir.join(&file);
        let image = super::run::picture(&mut self.lab.model, spec, &path)?;
        let r = self
            .lab
            .scorer
            .score(&image)
            .with_context(|| format!("measuring {}", path.display()))?;
        self.draws.insert(levels, noise, r)?;
        self.bar.inc(1);
        Ok(r)
    }

    /// The mean response of `levels` over every noise condition.
    fn value(&mut self, levels: &[usize]) -> anyhow::Result<f64> {
        let n = self.lab.noises;
        let mut sum = 0.0;
        for noise in 0..n {
            sum += self.response(levels, noise)?;
        }
        Ok(sum / n as f64)
    }
}

/// One valuation of a strategy's recommendation.
struct Point {
    method: usize,
    repeat: usize,
    pictures: usize,
    levels: Vec<usize>,
    value: f64,
}

pub fn run(args: &LabOptimizeArgs) -> anyhow::Result<()> {
    let mut lab = super::open(&args.lab)?;
    let levels: Vec<usize> = lab
        .experiment
        .factors
        .iter()
        .map(|f| f.levels.len())
        .collect();
    let array_specs = lab.experiment.runs()?;
    let budget = args.budget.unwrap_or(array_specs.len());
    if budget == 0 || args.repeats == 0 {
        anyhow::bail!("--budget and --repeats must be at least 1");
    }
    let checkpoints: Vec<usize> = {
        let mut c: Vec<usize> = (1..=10).map(|k| (budget * k).div_ceil(10)).collect();
        c.dedup();
        c
    };
    let draws = Draws::load(&lab.dir.join("draws.csv"))?;
    eprintln!(
        "{}: {} pictures per strategy, {} repeats, {} pictures already drawn",
        lab.experiment.name,
        budget,
        args.repeats,
        draws.len()
    );
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} drawing: {pos} new pictures, {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let noises = lab.noises;
    let mut oracle = Oracle {
        lab: &mut lab,
        draws,
        bar,
    };
    let mut points: Vec<Point> = Vec::new();

    // The orthogonal array: its rows over the noise conditions, in order; deterministic, so
    // drawn once. Its recommendation is the additive optimum of what it has seen.
    oracle.bar.set_message(METHODS[0]);
    let mut seen: Vec<(Vec<usize>, f64)> = Vec::new();
    for k in 1..=budget {
        if let Some(spec) = array_specs.get(k - 1) {
            let r = oracle.response(&spec.levels, spec.noise)?;
            seen.push((spec.levels.clone(), r));
        }
        if checkpoints.contains(&k) {
            let rec = additive_best(&levels, &seen);
            let value = oracle.value(&rec)?;
            points.push(Point {
                method: 0,
                repeat: 0,
                pictures: k,
                levels: rec,
                value,
            });
        }
    }
    for repeat in 0..args.repeats {
        oracle
            .bar
            .set_message(format!("{}, repeat {}", METHODS[1], repeat + 1));
        let mut gen = TorchCpuGenerator::new(1000 + repeat as u64);
        let mut random = RandomSearch::new(&levels);
        for k in 1..=budget {
            let c = random.sample(&mut gen);
            let r = oracle.response(&c, (k - 1) % noises)?;
            random.record(&c, r);
            if checkpoints.contains(&k) {
                let rec = random.best();
                let value = oracle.value(&rec)?;
                points.push(Point {
                    method: 1,
                    repeat,
                    pictures: k,
                    levels: rec,
                    value,
                });
            }
        }
        oracle
            .bar
            .set_message(format!("{}, repeat {}", METHODS[2], repeat + 1));
        let mut gen = TorchCpuGenerator::new(2000 + repeat as u64);
        // Thompson sampling starts from the orthogonal array's rows (each once, the first
        // noise condition first), so its first estimates are balanced.
        let mut warm: Vec<Vec<usize>> = Vec::new();
        for spec in &array_specs {
            if !warm.contains(&spec.levels) {
                warm.push(spec.levels.clone());
            }
        }
        warm.truncate(budget / 2);
        let mut bandit = FactorBandit::new(&levels, warm);
        for k in 1..=budget {
            let c = bandit.sample(&mut gen);
            let r = oracle.response(&c, (k - 1) % noises)?;
            bandit.record(&c, r);
            if checkpoints.contains(&k) {
                let rec = bandit.best();
                let value = oracle.value(&rec)?;
                points.push(Point {
                    method: 2,
                    repeat,
                    pictures: k,
                    levels: rec,
                    value,
                });
            }
        }
    }
    oracle.bar.finish_and_clear();
    let best = points.iter().map(|p| p.value).fold(f64::MIN, f64::max);
    let best_levels = points
        .iter()
        .find(|p| p.value == best)
        .map(|p| p.levels.clone())
        .unwrap_or_default();
    let tolerance = match args.tolerance {
        Some(t) => t,
        None => {
            let se = oracle.draws.value_standard_error(noises).unwrap_or(0.0);
            eprintln!(
                "a combination's value is the mean of {noises} noise conditions: standard error {se:.4} (the tolerance; --tolerance to set it)"
            );
            se
        }
    };
    write_outputs(oracle.lab, &points, &checkpoints, args.repeats)?;
    print!(
        "{}",
        summary(
            &points,
            best,
            &best_levels,
            tolerance,
            args.repeats,
            oracle.lab
        )
    );
    Ok(())
}

fn write_outputs(
    lab: &Lab,
    points: &[Point],
    checkpoints: &[usize],
    repeats: usize,
) -> anyhow::Result<()> {
    let mut csv = String::from("method,repeat,pictures,levels,value\n");
    for p in points {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            METHODS[p.method],
            p.repeat + 1,
            p.pictures,
            levels_key(&p.levels),
            p.value
        ));
    }
    let path = lab.dir.join("optimize.csv");
    kakusan_core::output::write_atomically(&path, csv.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    let series: Vec<Series> = (0..METHODS.len())
        .map(|m| Series {
            name: if m == 0 {
                METHODS[m].to_uppercase()
            } else {
                format!("{} (MEAN OF {repeats})", METHODS[m].to_uppercase())
            },
            points: checkpoints
                .iter()
                .filter_map(|&k| {
                    let v: Vec<f64> = points
                        .iter()
                        .filter(|p| p.method == m && p.pictures == k)
                        .map(|p| p.value)
                        .collect();
                    (!v.is_empty()).then(|| (k as f64, v.iter().sum::<f64>() / v.len() as f64))
                })
                .collect(),
        })
        .collect();
    let img = curve_plot::render(
        "VALUE OF THE RECOMMENDED PROMPT (MEAN RESPONSE OVER THE NOISE CONDITIONS)",
        "PICTURES DRAWN BY THE STRATEGY",
        &series,
    );
    let path = lab.dir.join("optimize.png");
    kakusan_core::png_meta::write_png(&path, &img)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

fn summary(
    points: &[Point],
    best: f64,
    best_levels: &[usize],
    tolerance: f64,
    repeats: usize,
    lab: &Lab,
) -> String {
    let mut s = format!(
        "best combination found: levels {} (value {best:.4}), prompt {:?}\n",
        levels_key(best_levels),
        lab.experiment
            .runs_at(0, best_levels)
            .ok()
            .and_then(|r| r.first().map(|s| s.prompt.clone()))
            .unwrap_or_default()
    );
    s.push_str(&format!(
        "strategy               final value (mean, sd)   pictures to come within {tolerance:.3} of the best\n"
    ));
    let mut needed_by = Vec::new();
    for (m, name) in METHODS.iter().enumerate() {
        let runs = if m == 0 { 1 } else { repeats };
        let mut finals = Vec::new();
        let mut needed = Vec::new();
        for repeat in 0..runs {
            let mine: Vec<&Point> = points
                .iter()
                .filter(|p| p.method == m && p.repeat == repeat)
                .collect();
            if let Some(last) = mine.last() {
                finals.push(last.value);
            }
            needed.push(
                mine.iter()
                    .find(|p| p.value >= best - tolerance)
                    .map(|p| p.pictures),
            );
        }
        let mean = finals.iter().sum::<f64>() / finals.len().max(1) as f64;
        let sd = if finals.len() > 1 {
            (finals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (finals.len() - 1) as f64)
                .sqrt()
        } else {
            0.0
        };
        let reached: Vec<usize> = needed.iter().flatten().copied().collect();
        let need_text = if reached.len() == needed.len() {
            let avg = reached.iter().sum::<usize>() as f64 / reached.len() as f64;
            needed_by.push(Some(avg));
            format!("{avg:.1} (every run)")
        } else {
            needed_by.push(None);
            format!("{} of {} runs within budget", reached.len(), needed.len())
        };
        s.push_str(&format!(
            "{name:<22} {mean:>8.4} {sd:>8.4}             {need_text}\n"
        ));
    }
    if let (Some(Some(ts)), Some(Some(rs))) = (needed_by.get(2), needed_by.get(1)) {
        s.push_str(&format!(
            "thompson sampling needed {:.0} % of the pictures random search needed\n",
            100.0 * ts / rs
        ));
    }
    s
}
