//! `results.csv` of a lab run: one line per picture (inner row, outer condition, seed,
//! response, file, prompt). It is rewritten atomically after every picture, so a killed run
//! resumes where it stopped and never draws a picture twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

const HEADER: &str = "row,noise,seed,response,file,prompt";

/// One measured picture (`row` and `noise` 0-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub row: usize,
    pub noise: usize,
    pub seed: u64,
    pub response: f64,
    /// Relative to the run folder.
    pub file: String,
    pub prompt: String,
}

/// Every picture measured so far.
#[derive(Debug)]
pub struct Results {
    path: PathBuf,
    records: BTreeMap<(usize, usize), Record>,
}

impl Results {
    /// Reads `path`; a missing file is an empty run.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut records = BTreeMap::new();
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            for (i, line) in text.lines().enumerate().skip(1) {
                if line.trim().is_empty() {
                    continue;
                }
                let r = parse_record(line)
                    .with_context(|| format!("{} line {}: {line:?}", path.display(), i + 1))?;
                records.insert((r.row, r.noise), r);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            records,
        })
    }

    pub fn get(&self, row: usize, noise: usize) -> Option<&Record> {
        self.records.get(&(row, noise))
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Adds (or replaces) a record and writes the file.
    pub fn insert(&mut self, record: Record) -> anyhow::Result<()> {
        self.records.insert((record.row, record.noise), record);
        let mut text = String::from(HEADER);
        text.push('\n');
        for r in self.records.values() {
            text.push_str(&format!(
                "{},{},{},{},{},{}\n",
                r.row + 1,
                r.noise + 1,
                r.seed,
                r.response,
                quote(&r.file),
                quote(&r.prompt)
            ));
        }
        kakusan_core::output::write_atomically(&self.path, text.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// A CSV field: quoted (with doubled quotes) when it holds a comma, quote or line break.
fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Splits one CSV line into fields (quoted fields may hold commas and doubled quotes).
fn fields(line: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => bail!("an unterminated quoted field"),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => {}
                Some(c) => bail!("{c:?} after a quoted field"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        out.push(field);
    }
}

fn parse_record(line: &str) -> anyhow::Result<Record> {
    let f = fields(line)?;
    let [row, noise, seed, response, file, prompt] = f.as_slice() else {
        bail!("expected 6 fields ({HEADER}), got {}", f.len());
    };
    let one_based = |s: &str, what: &str| -> anyhow::Result<usize> {
        match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n - 1),
            _ => bail!("{what} must be a number from 1, got {s:?}"),
        }
    };
    Ok(Record {
        row: one_based(row, "row")?,
        noise: one_based(noise, "noise")?,
        seed: seed.parse().with_context(|| format!("seed {seed:?}"))?,
        response: response
            .parse()
            .with_context(|| format!("response {response:?}"))?,
        file: file.clone(),
        prompt: prompt.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_file_with_awkward_prompts() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("results.csv");
        let mut results = Results::load(&path).unwrap();
        assert_eq!(results.len(), 0);
        let a = Record {
            row: 0,
            noise: 1,
            seed: 7,
            response: 0.25,
            file: "images/r01-n02.png".into(),
            prompt: "a (red:1.3) 5, \"big\", on blue".into(),
        };
        let b = Record {
            row: 2,
            noise: 0,
            seed: 1,
            response: 1.0,
            file: "images/r03-n01.png".into(),
            prompt: "plain".into(),
        };
        results.insert(a.clone()).unwrap();
        results.insert(b.clone()).unwrap();
        let again = Results::load(&path).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.get(0, 1), Some(&a));
        assert_eq!(again.get(2, 0), Some(&b));
        assert_eq!(again.get(1, 0), None);
    }

    #[test]
    fn a_damaged_line_is_an_error_that_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("results.csv");
        std::fs::write(&path, format!("{HEADER}\n1,1,5,0.5,a.png,\"open\n")).unwrap();
        let e = format!("{:#}", Results::load(&path).unwrap_err());
        assert!(e.contains("line 2"), "{e}");
        std::fs::write(&path, format!("{HEADER}\n0,1,5,0.5,a.png,p\n")).unwrap();
        let e = format!("{:#}", Results::load(&path).unwrap_err());
        assert!(e.contains("row must be a number from 1"), "{e}");
    }
}
