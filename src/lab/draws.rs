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
