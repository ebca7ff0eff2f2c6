//! `draws.csv` of the optimiser: the response of every (level combination, noise condition)
//! drawn so far (both 1-based on disk), rewritten atomically after each new picture. The
//! optimiser asks this cache first, so repeats, strategies and resumed runs never draw the
//! same picture twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// 1-based levels joined by '-', e.g. "1-3-2".
pub fn levels_key(levels: &[usize]) -> String {
    levels
        .iter()
        .map(|l| (l + 1).to_string())
        .collect::<Vec<_>>()
        .join("-")
}

/// Every (levels, noise condition) measured so far.
#[derive(Debug)]
pub struct Draws {
    path: PathBuf,
    /// (levels key, 0-based noise condition) → response.
    responses: BTreeMap<(String, usize), f64>,
}

impl Draws {
    /// Reads `path`; a missing file is an empty cache.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut responses = BTreeMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            for (i, line) in text.lines().enumerate().skip(1) {
                let parts: Vec<&str> = line.split(',').collect();
                let [levels, noise, response] = parts.as_slice() else {
                    bail!(
                        "{} line {}: expected levels,noise,response",
                        path.display(),
                        i + 1
                    );
                };
                let noise: usize = match noise.parse::<usize>() {
                    Ok(n) if n >= 1 => n - 1,
                    _ => bail!("{} line {}: noise {noise:?}", path.display(), i + 1),
                };
                let response: f64 = response
                    .parse()
                    .with_context(|| format!("{} line {}: response", path.display(), i + 1))?;
                responses.insert((levels.to_string(), noise), response);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            responses,
        })
    }

    pub fn get(&self, levels: &[usize], noise: usize) -> Option<f64> {
        self.responses.get(&(levels_key(levels), noise)).copied()
    }

    pub fn len(&self) -> usize {
        self.responses.len()
    }

    /// The standard error of a combination's value (its mean response over `noises`
    /// conditions): the spread of single responses around their combination's mean, pooled
    /// over every combination drawn under all `noises` conditions, over sqrt(`noises`).
    /// `None` before any combination has all of them (or with one condition).
    pub fn value_standard_error(&self, noises: usize) -> Option<f64> {
        if noises < 2 {
            return None;
        }
        let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for ((levels, noise), r) in &self.responses {
            if *noise < noises {
                groups.entry(levels.as_str()).or_default().push(*r);
            }
        }
        let (mut ss, mut dof) = (0.0, 0usize);
        for values in groups.values().filter(|v| v.len() == noises) {
            let mean = values.iter().sum::<f64>() / noises as f64;
            ss += values.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
            dof += noises - 1;
        }
        (dof > 0).then(|| (ss / dof as f64 / noises as f64).sqrt())
    }

    /// Records a response and writes the file.
    pub fn insert(&mut self, levels: &[usize], noise: usize, response: f64) -> anyhow::Result<()> {
        self.responses.insert((levels_key(levels), noise), response);
        let mut text = String::from("levels,noise,response\n");
        for ((l, s), r) in &self.responses {
            text.push_str(&format!("{l},{},{r}\n", s + 1));
        }
        kakusan_core::output::write_atomically(&self.path, text.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_standard_error_pools_complete_combinations() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Draws::load(&dir.path().join("draws.csv")).unwrap();
        assert_eq!(d.value_standard_error(2), None);
        // Two combinations under both conditions: deviations +-0.1 and +-0.2 around their
        // means; a third with one condition only does not count.
        d.insert(&[0, 0], 0, 0.4).unwrap();
        d.insert(&[0, 0], 1, 0.6).unwrap();
        d.insert(&[1, 0], 0, 0.1).unwrap();
        d.insert(&[1, 0], 1, 0.5).unwrap();
        d.insert(&[1, 1], 0, 0.9).unwrap();
        // Pooled variance (0.02 + 0.08) / 2 = 0.05; a 2-condition mean's SE sqrt(0.05 / 2).
        let se = d.value_standard_error(2).unwrap();
        assert!((se - (0.05f64 / 2.0).sqrt()).abs() < 1e-12, "{se}");
        // Read back from the file, the same.
        let again = Draws::load(&dir.path().join("draws.csv")).unwrap();
        assert_eq!(again.value_standard_error(2), Some(se));
    }
}
