//! The experiment file (TOML): a prompt template with `{slots}`, control factors (slot wordings,
//! emphasis weights, negative prompts, sampler, schedule, steps, CFG, size) with 2 or 3 levels
//! on an orthogonal array (the inner array), noise factors crossed into the outer array
//! (seeds, optionally samplers and sizes), the response and the SN type. Parsing validates
//! everything the generator will rely on and says what is wrong in words.
//!
//! ```toml
//! name = "red five"
//! template = "a {colour} 5 on a blue background"
//! [settings]
//! steps = 20
//! [[factor]]
//! name = "colour word"
//! slot = "colour"
//! levels = ["red", "crimson", "(red:1.3)"]
//! [[factor]]
//! name = "cfg"
//! setting = "cfg"
//! levels = [5.0, 7.5, 10.0]
//! [noise]
//! seeds = [1, 2, 3, 4]
//! [response]
//! measure = "probability"
//! target = { glyph = "5", colour = "red", background = "blue" }
//! sn = "larger-the-better"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::analysis::SnType;
use crate::arrays::{design, dummy_level, ArrayKind, AssignError, OrthogonalArray};

/// The attributes the built-in evaluator reads off a picture.
pub const ATTRIBUTES: [&str; 5] = ["glyph", "colour", "background", "position", "size"];

/// Why an experiment file is not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExperimentError {
    #[error("cannot read {path}: {message}")]
    Io { path: String, message: String },
    #[error("experiment file: {0}")]
    Toml(String),
    #[error("the experiment has no [[factor]]")]
    NoFactors,
    #[error("factor \"{0}\" is defined twice")]
    DuplicateFactor(String),
    #[error("factor \"{factor}\" has {got} levels; each factor needs 2 or 3")]
    LevelCount { factor: String, got: usize },
    #[error("factor \"{factor}\" repeats the level {level}")]
    DuplicateLevel { factor: String, level: String },
    #[error("factor \"{0}\" needs exactly one of `slot = \"...\"` (a template slot) or `setting = \"...\"`")]
    SlotOrSetting(String),
    #[error("factor \"{factor}\" fills slot {{{slot}}}, which the template does not have (its slots: {known})")]
    UnknownSlot {
        factor: String,
        slot: String,
        known: String,
    },
    #[error("the template's slot {{{0}}} has no factor; add a [[factor]] with slot = \"{0}\"")]
    UnfilledSlot(String),
    #[error("slot {{{0}}} is filled by two factors")]
    SlotTwice(String),
    #[error("the setting {0} is a factor twice (or a factor and a noise factor)")]
    SettingTwice(String),
    #[error("template: {0}")]
    Template(String),
    #[error("factor \"{factor}\", level {index}: {message}")]
    BadLevel {
        factor: String,
        index: usize,
        message: String,
    },
    #[error("[settings] {0}")]
    BadSetting(String),
    #[error("unknown array \"{0}\": use one of L4, L8, L9, L12, L16, L18, L27")]
    UnknownArray(String),
    #[error("{0}")]
    Array(#[from] AssignError),
    #[error("[noise] {0}")]
    Noise(String),
    #[error("[response] {0}")]
    Response(String),
}

/// Generation settings that are not factors (or the defaults for those that are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub sampler: String,
    /// `None`: the sampler's default schedule.
    pub schedule: Option<String>,
    pub steps: usize,
    pub cfg: f64,
    pub width: usize,
    pub height: usize,
    pub negative: String,
    /// Model folder; `None`: the built-in kakusan-mini.
    pub model: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        // The built-in model's native size and the CLI's usual defaults. The CFG stays 7
        // whatever the model's generation_defaults.json recommends (kakusan-mini: 2.5): an
        // experiment file means the same pictures with any model folder; give `cfg` to
        // change it.
        Settings {
            sampler: "Euler a".into(),
            schedule: None,
            steps: 20,
            cfg: 7.0,
            width: 64,
            height: 64,
            negative: String::new(),
            model: None,
        }
    }
}

/// A generation setting a factor can vary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    Sampler,
    Schedule,
    Steps,
    Cfg,
    Negative,
    /// "WxH", e.g. "64x64".
    Size,
}

impl Setting {
    pub fn name(self) -> &'static str {
        match self {
            Setting::Sampler => "sampler",
            Setting::Schedule => "schedule",
            Setting::Steps => "steps",
            Setting::Cfg => "cfg",
            Setting::Negative => "negative",
            Setting::Size => "size",
        }
    }
}

/// A control factor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    pub name: String,
    /// The template slot it fills (levels: text, or numbers such as emphasis weights).
    pub slot: Option<String>,
    /// Or the setting it varies.
    pub setting: Option<Setting>,
    pub levels: Vec<toml::Value>,
}

/// The outer array: every combination of the noise levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub samplers: Vec<String>,
    /// "WxH" each.
    #[serde(default)]
    pub sizes: Vec<String>,
}

/// What is measured on each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// Share of the target attributes the evaluator reads as asked (0 … 1).
    Adherence,
    /// Mean evaluator probability of the target classes (0 … 1, never exactly 0: suits
    /// larger-the-better).
    Probability,
    /// T-method Mahalanobis distance D against the unit space.
    TDistance,
    /// T-method sensitivity Y1 = β.
    TBeta,
    /// T-method noise Y2.
    TNoise,
}

impl Measure {
    /// Its name in the experiment file.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Adherence => "adherence",
            Measure::Probability => "probability",
            Measure::TDistance => "t-distance",
            Measure::TBeta => "t-beta",
            Measure::TNoise => "t-noise",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub measure: Measure,
    pub sn: SnType,
    /// attribute → class name the prompt asks for (for adherence / probability).
    #[serde(default)]
    pub target: BTreeMap<String, String>,
    /// Folder of reference images (for the T-method measures).
    pub unit_space: Option<String>,
}

/// A parsed and validated experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub template: String,
    /// "L8" etc.; absent: the smallest array that fits.
    pub array: Option<String>,
    #[serde(default)]
    pub settings: Settings,
    #[serde(rename = "factor", default)]
    pub factors: Vec<Factor>,
    pub noise: Noise,
    pub response: Response,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Slot(String),
}

/// Splits a template into text and `{slot}`s; `{{` and `}}` are literal braces.
pub fn parse_template(t: &str) -> Result<Vec<Piece>, ExperimentError> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) if ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' => {
                            name.push(ch)
                        }
                        Some(ch) => {
                            return Err(ExperimentError::Template(format!(
                                "slot names use letters, digits, _ and -; found '{ch}' in {{{name}... (write {{{{ for a literal brace)"
                            )))
                        }
                        None => {
                            return Err(ExperimentError::Template(format!(
                                "slot {{{name} is not closed"
                            )))
                        }
                    }
                }
                if name.is_empty() {
                    return Err(ExperimentError::Template("empty slot {}".into()));
                }
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Slot(name));
            }
            '}' => {
                return Err(ExperimentError::Template(
                    "a '}' without '{' (write }} for a literal brace)".into(),
                ))
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

/// A level as the text it puts into a prompt or a setting.
pub fn level_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

/// Parses "WxH".
pub fn parse_size(s: &str) -> Option<(usize, usize)> {
    let (w, h) = s.trim().split_once(['x', 'X'])?;
    let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

/// One image's generation parameters: an inner row under one outer (noise) condition.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// 0-based inner-array row.
    pub row: usize,
    /// 0-based outer-array index.
    pub noise: usize,
    /// 0-based level of every factor.
    pub levels: Vec<usize>,
    pub prompt: String,
    pub negative: String,
    pub sampler: String,
    pub schedule: Option<String>,
    pub steps: usize,
    pub cfg: f64,
    pub width: usize,
    pub height: usize,
    pub seed: u64,
}

/// One outer-array condition.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseCondition {
    pub seed: u64,
    pub sampler: Option<String>,
    pub size: Option<(usize, usize)>,
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Self, ExperimentError> {
        let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text)
    }

    /// Parses and validates.
    pub fn parse(text: &str) -> Result<Self, ExperimentError> {
        let e: Experiment =
            toml::from_str(text).map_err(|e| ExperimentError::Toml(e.to_string()))?;
        e.validate()?;
        Ok(e)
    }

    /// The template's slot names in order of first appearance.
    pub fn slots(&self) -> Result<Vec<String>, ExperimentError> {
        let mut slots: Vec<String> = Vec::new();
        for p in parse_template(&self.template)? {
            if let Piece::Slot(s) = p {
                if !slots.contains(&s) {
                    slots.push(s);
                }
            }
        }
        Ok(slots)
    }

    pub fn validate(&self) -> Result<(), ExperimentError> {
        let slots = self.slots()?;
        if self.factors.is_empty() {
            return Err(ExperimentError::NoFactors);
        }
        let s = &self.settings;
        if s.steps == 0 {
            return Err(ExperimentError::BadSetting(
                "steps must be at least 1".into(),
            ));
        }
        if !(s.cfg.is_finite() && s.cfg >= 0.0) {
            return Err(ExperimentError::BadSetting(format!(
                "cfg must be a number >= 0, got {}",
                s.cfg
            )));
        }
        if s.width == 0
            || s.height == 0
            || !s.width.is_multiple_of(8)
            || !s.height.is_multiple_of(8)
        {
            return Err(ExperimentError::BadSetting(format!(
                "width and height must be positive multiples of 8, got {}x{}",
                s.width, s.height
            )));
        }
        let mut names: Vec<&str> = Vec::new();
        let mut filled: Vec<&str> = Vec::new();
        let mut settings: Vec<Setting> = Vec::new();
        for f in &self.factors {
            if names.contains(&f.name.as_str()) {
                return Err(ExperimentError::DuplicateFactor(f.name.clone()));
            }
            names.push(&f.name);
            if f.levels.len() != 2 && f.levels.len() != 3 {
                return Err(ExperimentError::LevelCount {
                    factor: f.name.clone(),
                    got: f.levels.len(),
                });
            }
            for (i, v) in f.levels.iter().enumerate() {
                if f.levels[..i].contains(v) {
                    return Err(ExperimentError::DuplicateLevel {
                        factor: f.name.clone(),
                        level: v.to_string(),
                    });
                }
            }
            match (&f.slot, f.setting) {
                (Some(slot), None) => {
                    if !slots.contains(slot) {
                        return Err(ExperimentError::UnknownSlot {
                            factor: f.name.clone(),
                            slot: slot.clone(),
                            known: if slots.is_empty() {
                                "none".into()
                            } else {
                                slots
                                    .iter()
                                    .map(|s| format!("{{{s}}}"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            },
                        });
                    }
                    if filled.contains(&slot.as_str()) {
                        return Err(ExperimentError::SlotTwice(slot.clone()));
                    }
                    filled.push(slot);
                    for (i, v) in f.levels.iter().enumerate() {
                        if level_text(v).is_none() {
                            return Err(bad_level(f, i, "a slot level is text or a number"));
                        }
                    }
                }
                (None, Some(setting)) => {
                    if settings.contains(&setting) {
                        return Err(ExperimentError::SettingTwice(setting.name().into()));
                    }
                    settings.push(setting);
                    for (i, v) in f.levels.iter().enumerate() {
                        check_setting_level(f, setting, i, v)?;
                    }
                }
                _ => return Err(ExperimentError::SlotOrSetting(f.name.clone())),
            }
        }
        if let Some(slot) = slots.iter().find(|s| !filled.contains(&s.as_str())) {
            return Err(ExperimentError::UnfilledSlot(slot.clone()));
        }
        self.validate_noise(&settings)?;
        self.validate_response()?;
        self.design()?;
        Ok(())
    }

    fn validate_noise(&self, settings: &[Setting]) -> Result<(), ExperimentError> {
        let n = &self.noise;
        if n.seeds.is_empty() {
            return Err(ExperimentError::Noise(
                "seeds is empty: give at least one seed (several, to measure robustness)".into(),
            ));
        }
        for (i, s) in n.seeds.iter().enumerate() {
            if n.seeds[..i].contains(s) {
                return Err(ExperimentError::Noise(format!("seed {s} is listed twice")));
            }
        }
        if !n.samplers.is_empty() && settings.contains(&Setting::Sampler) {
            return Err(ExperimentError::SettingTwice("sampler".into()));
        }
        if !n.sizes.is_empty() && settings.contains(&Setting::Size) {
            return Err(ExperimentError::SettingTwice("size".into()));
        }
        for s in &n.sizes {
            match parse_size(s) {
                Some((w, h)) if w.is_multiple_of(8) && h.is_multiple_of(8) => {}
                _ => {
                    return Err(ExperimentError::Noise(format!(
                        "size \"{s}\" is not WxH with multiples of 8 (e.g. \"64x64\")"
                    )))
                }
            }
        }
        Ok(())
    }

    fn validate_response(&self) -> Result<(), ExperimentError> {
        let r = &self.response;
        match r.measure {
            Measure::Adherence | Measure::Probability => {
                if r.target.is_empty() {
                    return Err(ExperimentError::Response(format!(
                        "measure \"{}\" needs target = {{ attribute = \"class\", ... }} with attributes from {}",
                        r.measure.name(),
                        ATTRIBUTES.join(", ")
                    )));
                }
                for (k, v) in &r.target {
                    if !ATTRIBUTES.contains(&k.as_str()) {
                        return Err(ExperimentError::Response(format!(
                            "unknown target attribute \"{k}\": the evaluator reads {}",
                            ATTRIBUTES.join(", ")
                        )));
                    }
                    if v.trim().is_empty() {
                        return Err(ExperimentError::Response(format!("target {k} is empty")));
                    }
                }
            }
            Measure::TDistance | Measure::TBeta | Measure::TNoise => {
                if r.unit_space.as_deref().is_none_or(|u| u.trim().is_empty()) {
                    return Err(ExperimentError::Response(
                        "the T-method measures need unit_space = \"FOLDER\" of reference images"
                            .into(),
                    ));
                }
            }
        }
        let outer = self.outer().len();
        if matches!(r.sn, SnType::NominalTheBest | SnType::NominalVariance) && outer < 2 {
            return Err(ExperimentError::Response(format!(
                "sn = \"{}\" needs a variance over the noise conditions: give at least 2 seeds",
                r.sn.name()
            )));
        }
        Ok(())
    }

    /// The inner array and the column of every factor (a two-level factor may sit on a
    /// three-level column with a dummy level, see [`crate::arrays::design`]).
    pub fn design(&self) -> Result<(OrthogonalArray, Vec<usize>), ExperimentError> {
        let kind = match &self.array {
            None => None,
            Some(s) => {
                Some(ArrayKind::parse(s).ok_or_else(|| ExperimentError::UnknownArray(s.clone()))?)
            }
        };
        let levels: Vec<usize> = self.factors.iter().map(|f| f.levels.len()).collect();
        Ok(design(kind, &levels)?)
    }

    /// The outer array: seeds × samplers × sizes (the empty lists left out), seeds fastest.
    pub fn outer(&self) -> Vec<NoiseCondition> {
        let samplers: Vec<Option<String>> = if self.noise.samplers.is_empty() {
            vec![None]
        } else {
            self.noise.samplers.iter().cloned().map(Some).collect()
        };
        let sizes: Vec<Option<(usize, usize)>> = if self.noise.sizes.is_empty() {
            vec![None]
        } else {
            self.noise.sizes.iter().map(|s| parse_size(s)).collect()
        };
        let mut out = Vec::new();
        for size in &sizes {
            for sampler in &samplers {
                for &seed in &self.noise.seeds {
                    out.push(NoiseCondition {
                        seed,
                        sampler: sampler.clone(),
                        size: *size,
                    });
                }
            }
        }
        out
    }

    /// Every image of the experiment, inner row by inner row, each over the outer array.
    pub fn runs(&self) -> Result<Vec<RunSpec>, ExperimentError> {
        let (oa, cols) = self.design()?;
        let mut out = Vec::with_capacity(oa.runs() * self.outer().len());
        for (row, r) in oa.rows.iter().enumerate() {
            let levels: Vec<usize> = cols
                .iter()
                .zip(&self.factors)
                .map(|(&c, f)| dummy_level(r[c], f.levels.len()))
                .collect();
            out.extend(self.runs_at(row, &levels)?);
        }
        Ok(out)
    }

    /// The images of one combination of factor levels (0-based, one per factor) over the
    /// outer array, labelled as inner row `row`: an array row, or the optimum of a
    /// confirmation run.
    pub fn runs_at(&self, row: usize, levels: &[usize]) -> Result<Vec<RunSpec>, ExperimentError> {
        if levels.len() != self.factors.len()
            || levels
                .iter()
                .zip(&self.factors)
                .any(|(&l, f)| l >= f.levels.len())
        {
            return Err(ExperimentError::BadSetting(format!(
                "levels {levels:?} do not fit the {} factors",
                self.factors.len()
            )));
        }
        let pieces = parse_template(&self.template)?;
        let outer = self.outer();
        let mut out = Vec::with_capacity(outer.len());
        let mut base = RunSpec {
            row,
            noise: 0,
            levels: levels.to_vec(),
            prompt: String::new(),
            negative: self.settings.negative.clone(),
            sampler: self.settings.sampler.clone(),
            schedule: self.settings.schedule.clone(),
            steps: self.settings.steps,
            cfg: self.settings.cfg,
            width: self.settings.width,
            height: self.settings.height,
            seed: 0,
        };
        let mut slot_text: BTreeMap<&str, String> = BTreeMap::new();
        for (f, &l) in self.factors.iter().zip(levels) {
            let v = &f.levels[l];
            let text = level_text(v).unwrap_or_default();
            if let Some(slot) = &f.slot {
                slot_text.insert(slot, text);
            } else if let Some(s) = f.setting {
                match s {
                    Setting::Sampler => base.sampler = text,
                    Setting::Schedule => base.schedule = Some(text),
                    Setting::Negative => base.negative = text,
                    Setting::Steps => base.steps = v.as_integer().unwrap_or(0) as usize,
                    Setting::Cfg => {
                        base.cfg = v
                            .as_float()
                            .or(v.as_integer().map(|i| i as f64))
                            .unwrap_or(0.0)
                    }
                    Setting::Size => {
                        if let Some((w, h)) = parse_size(&text) {
                            base.width = w;
                            base.height = h;
                        }
                    }
                }
            }
        }
        base.prompt = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Slot(s) => slot_text.get(s.as_str()).map_or("", |t| t.as_str()),
            })
            .collect();
        for (i, n) in outer.iter().enumerate() {
            let mut run = base.clone();
            run.noise = i;
            run.seed = n.seed;
            if let Some(s) = &n.sampler {
                run.sampler = s.clone();
            }
            if let Some((w, h)) = n.size {
                run.width = w;
                run.height = h;
            }
            out.push(run);
        }
        Ok(out)
    }
}

fn bad_level(f: &Factor, index: usize, message: &str) -> ExperimentError {
    ExperimentError::BadLevel {
        factor: f.name.clone(),
        index: index + 1,
        message: format!("{message}, got {}", f.levels[index]),
    }
}

fn check_setting_level(
    f: &Factor,
    setting: Setting,
    i: usize,
    v: &toml::Value,
) -> Result<(), ExperimentError> {
    let ok = match setting {
        Setting::Sampler | Setting::Schedule => v.as_str().is_some_and(|s| !s.trim().is_empty()),
        Setting::Negative => v.is_str(),
        Setting::Steps => v.as_integer().is_some_and(|s| (1..=1000).contains(&s)),
        Setting::Cfg => v
            .as_float()
            .or(v.as_integer().map(|i| i as f64))
            .is_some_and(|c| c.is_finite() && c >= 0.0),
        Setting::Size => v
            .as_str()
            .and_then(parse_size)
            .is_some_and(|(w, h)| w.is_multiple_of(8) && h.is_multiple_of(8)),
    };
    if ok {
        Ok(())
    } else {
        let what = match setting {
            Setting::Sampler => "a sampler level is a sampler name such as \"Euler a\"",
            Setting::Schedule => "a schedule level is a name such as \"karras\"",
            Setting::Negative => "a negative-prompt level is text (\"\" for none)",
            Setting::Steps => "a steps level is an integer from 1 to 1000",
            Setting::Cfg => "a cfg level is a number >= 0",
            Setting::Size => "a size level is \"WxH\" with multiples of 8",
        };
        Err(bad_level(f, i, what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../examples/lab/red-five.toml");

    #[test]
    fn the_example_parses_and_expands() {
        let e = Experiment::parse(EXAMPLE).unwrap();
        let (oa, cols) = e.design().unwrap();
        assert_eq!(oa.kind, ArrayKind::L18);
        assert_eq!(cols.len(), e.factors.len());
        let outer = e.outer();
        assert_eq!(outer.len(), e.noise.seeds.len());
        let runs = e.runs().unwrap();
        assert_eq!(runs.len(), 18 * outer.len());
        // No slot is left unfilled and no brace survives.
        for r in &runs {
            assert!(
                !r.prompt.contains('{') && !r.prompt.contains('}'),
                "{}",
                r.prompt
            );
        }
        // Every (row, noise) pair is distinct.
        let mut keys: Vec<(usize, usize)> = runs.iter().map(|r| (r.row, r.noise)).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), runs.len());
    }

    #[test]
    fn every_example_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/lab");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let e =
                    Experiment::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!e.runs().unwrap().is_empty());
                n += 1;
            }
        }
        assert!(n >= 2, "examples/lab has {n} experiments");
        let e = Experiment::load(&dir.join("green-circle-l8.toml")).unwrap();
        assert_eq!(e.outer().len(), 6);
        assert_eq!(e.runs().unwrap().len(), 8 * 6);
    }

    const SMALL: &str = r#"
name = "t"
template = "a {colour} 5, {style}"
[settings]
steps = 10
[[factor]]
name = "colour"
slot = "colour"
levels = ["red", "(red:1.2)"]
[[factor]]
name = "style"
slot = "style"
levels = ["flat", "bold"]
[[factor]]
name = "cfg"
setting = "cfg"
levels = [5, 7.5]
[noise]
seeds = [1, 2]
[response]
measure = "adherence"
target = { glyph = "5", colour = "red" }
sn = "larger-the-better"
"#;

    #[test]
    fn small_experiment_on_l4() {
        let e = Experiment::parse(SMALL).unwrap();
        let runs = e.runs().unwrap();
        assert_eq!(runs.len(), 8);
        // L4 rows (1,1,1), (1,2,2), (2,1,2), (2,2,1), each over seeds 1, 2.
        assert_eq!(runs[0].prompt, "a red 5, flat");
        assert_eq!(runs[0].cfg, 5.0);
        assert_eq!(runs[0].seed, 1);
        assert_eq!(runs[1].seed, 2);
        assert_eq!(runs[2].prompt, "a red 5, bold");
        assert_eq!(runs[2].cfg, 7.5);
        assert_eq!(runs[4].prompt, "a (red:1.2) 5, flat");
        assert_eq!(runs[6].prompt, "a (red:1.2) 5, bold");
        assert_eq!(runs[6].cfg, 5.0);
        assert_eq!(runs[6].levels, vec![1, 1, 0]);
        assert_eq!(runs[6].steps, 10);
        assert_eq!(runs[6].sampler, "Euler a");
    }

    #[test]
    fn two_level_factors_on_l9_use_a_dummy_level() {
        let e = Experiment::parse(&SMALL.replace("name = \"t\"", "name = \"t\"\narray = \"L9\""))
            .unwrap();
        let runs = e.runs().unwrap();
        assert_eq!(runs.len(), 18);
        // Every factor level is a real level (0 or 1), the first level twice as often.
        for f in 0..3 {
            assert!(runs.iter().all(|r| r.levels[f] < 2));
            let first = runs.iter().filter(|r| r.levels[f] == 0).count();
            assert_eq!(first, 12, "factor {f}");
        }
    }

    fn err(text: &str) -> String {
        Experiment::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn validation_errors_are_clear() {
        let m = err(&SMALL.replace("slot = \"style\"", "slot = \"styel\""));
        assert!(
            m.contains("slot {styel}") && m.contains("{colour}, {style}"),
            "{m}"
        );
        let m = err(&SMALL.replace("levels = [\"flat\", \"bold\"]", "levels = [\"flat\"]"));
        assert!(m.contains("has 1 levels"), "{m}");
        let m = err(&SMALL.replace(", {style}", ""));
        assert!(m.contains("does not have"), "{m}");
        let m = err(&SMALL.replace("a {colour} 5", "a {colour} {digit}"));
        assert!(m.contains("slot {digit} has no factor"), "{m}");
        let m = err(&SMALL.replace("levels = [5, 7.5]", "levels = [5, \"high\"]"));
        assert!(m.contains("cfg level is a number"), "{m}");
        let m = err(&SMALL.replace("target = { glyph = \"5\", colour = \"red\" }", ""));
        assert!(m.contains("measure \"adherence\" needs target"), "{m}");
        let m = err(&SMALL.replace("seeds = [1, 2]", "seeds = []"));
        assert!(m.contains("seeds is empty"), "{m}");
        let m = err(&SMALL.replace("seeds = [1, 2]", "seeds = [1, 1]"));
        assert!(m.contains("seed 1 is listed twice"), "{m}");
        let m = err(&SMALL.replace("glyph = \"5\"", "shape = \"5\""));
        assert!(m.contains("unknown target attribute \"shape\""), "{m}");
        let m = err(&SMALL.replace("larger-the-better", "bigger"));
        assert!(m.contains("unknown variant"), "{m}");
        let m = err(&SMALL.replace("steps = 10", "stepz = 10"));
        assert!(m.contains("stepz"), "{m}");
        let m = err(&SMALL
            .replace("name = \"t\"", "name = \"t\"\narray = \"L4\"")
            .replace(
                "[\"red\", \"(red:1.2)\"]",
                "[\"red\", \"(red:1.2)\", \"crimson\"]",
            ));
        assert!(
            m.contains("L4(2^3) holds") && m.contains("use L9(3^4)"),
            "{m}"
        );
        let m = err(&SMALL.replace("name = \"t\"", "name = \"t\"\narray = \"L5\""));
        assert!(m.contains("unknown array \"L5\""), "{m}");
        let m = err(&SMALL.replace("a {colour} 5", "a {colour 5"));
        assert!(m.contains("template"), "{m}");
        let m = err(&SMALL.replace("setting = \"cfg\"", "setting = \"cfg\"\nslot = \"style\""));
        assert!(m.contains("exactly one of"), "{m}");
        let m = err(&SMALL
            .replace("seeds = [1, 2]", "seeds = [1]")
            .replace("larger-the-better", "nominal-the-best"));
        assert!(m.contains("at least 2 seeds"), "{m}");
        let m = err(&SMALL.replace("measure = \"adherence\"", "measure = \"t-distance\""));
        assert!(m.contains("unit_space"), "{m}");
        let m = err(&SMALL.replace("[\"red\", \"(red:1.2)\"]", "[\"red\", \"red\"]"));
        assert!(m.contains("repeats the level"), "{m}");
    }

    #[test]
    fn templates() {
        assert_eq!(
            parse_template("a {x} {{b}} c").unwrap(),
            vec![
                Piece::Text("a ".into()),
                Piece::Slot("x".into()),
                Piece::Text(" {b} c".into())
            ]
        );
        assert!(parse_template("a {} b").is_err());
        assert!(parse_template("a } b").is_err());
        assert_eq!(parse_size("64x48"), Some((64, 48)));
        assert_eq!(parse_size("64"), None);
    }
}
