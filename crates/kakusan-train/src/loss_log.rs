//! The CSV loss log of a run (`OUT/loss.csv`: step, loss, learning rate, gradient norm,
//! seconds since the run started). On resume, rows after the checkpoint's step are dropped
//! so the log tells the story of the weights that exist.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_at, Result};

pub const HEADER: &str = "step,loss,lr,grad_norm,seconds";

/// One row of the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossRow {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub seconds: f64,
}

/// An append-only CSV log.
pub struct LossLog {
    path: PathBuf,
}

impl LossLog {
    /// Opens `path`, creating it with a header, and keeps only rows with `step <= keep_up_to`
    /// (all rows when `None`... a fresh run passes `Some(0)` and starts empty).
    pub fn open(path: &Path, keep_up_to: u64) -> Result<Self> {
        let kept: Vec<LossRow> = Self::read(path)?
            .into_iter()
            .filter(|r| r.step <= keep_up_to)
            .collect();
        let mut text = String::from(HEADER);
        text.push('\n');
        for r in &kept {
            text.push_str(&format_row(r));
        }
        kakusan_core::output::write_atomically(path, text.as_bytes())?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one row.
    pub fn append(&mut self, row: &LossRow) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_at(&self.path))?;
        f.write_all(format_row(row).as_bytes())
            .map_err(io_at(&self.path))
    }

    /// Every well-formed row of a log file (none if it does not exist).
    pub fn read(path: &Path) -> Result<Vec<LossRow>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(path)(e)),
        };
        Ok(text.lines().skip(1).filter_map(parse_row).collect())
    }
}

fn format_row(r: &LossRow) -> String {
    format!(
        "{},{:.6e},{:.6e},{:.4e},{:.1}\n",
        r.step, r.loss, r.lr, r.grad_norm, r.seconds
    )
}

fn parse_row(line: &str) -> Option<LossRow> {
    let mut it = line.split(',');
    Some(LossRow {
        step: it.next()?.trim().parse().ok()?,
        loss: it.next()?.trim().parse().ok()?,
        lr: it.next()?.trim().parse().ok()?,
        grad_norm: it.next()?.trim().parse().ok()?,
        seconds: it.next()?.trim().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64) -> LossRow {
        LossRow {
            step,
            loss: 1.0 / (step as f64 + 1.0),
            lr: 1e-3,
            grad_norm: 0.5,
            seconds: step as f64,
        }
    }

    #[test]
    fn resume_drops_rows_after_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("loss.csv");
        let mut log = LossLog::open(&path, 0).unwrap();
        for s in 1..=10 {
            log.append(&row(s)).unwrap();
        }
        assert_eq!(LossLog::read(&path).unwrap().len(), 10);
        let mut log = LossLog::open(&path, 6).unwrap();
        log.append(&row(7)).unwrap();
        let rows = LossLog::read(&path).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.step).collect::<Vec<_>>(),
            (1..=7).collect::<Vec<_>>()
        );
        assert!((rows[2].loss - 0.25).abs() < 1e-9);
    }
}
