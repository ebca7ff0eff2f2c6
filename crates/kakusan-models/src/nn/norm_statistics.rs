//! Group-norm statistics shared across the tiles of one picture.
//!
//! A network run tile by tile normalises each tile by its own group means and variances,
//! so a tile that is mostly sky comes out in another tint than its neighbour. The cure is
//! to normalise every tile with the statistics of the whole picture. [`record`] runs a
//! closure (one tile's forward pass) while every [`GroupNorm`](super::GroupNorm) call adds
//! the sums of its input over the tile's own region (its core, without the overlap it
//! shares with neighbours) to a [`NormStatistics`], one entry per call in call order; after
//! all tiles the entries are whole-picture statistics. [`replay`] then runs closures in
//! which the k-th group norm call normalises with the k-th entry's mean and variance
//! instead of its input's own.
//!
//! The tape lives in a thread-local slot for the closure's duration: the layers keep their
//! signatures, and a forward pass outside these functions is untouched. A network's
//! group-norm calls come in the same order for every tile, which is what pairs an entry
//! with its layer; a different number of calls is reported as an error.

use std::cell::RefCell;

use candle_core::{bail, DType, Result, Tensor};

/// The part of a tile whose statistics count: rows `[top, bottom)` and columns
/// `[left, right)` out of a tile of `height` x `width`, in the units of the tile's input
/// (the latent for a decoder); a layer whose feature map is `s` times larger counts `s`
/// times the rows and columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRegion {
    /// First counted row.
    pub top: usize,
    /// One past the last counted row.
    pub bottom: usize,
    /// First counted column.
    pub left: usize,
    /// One past the last counted column.
    pub right: usize,
    /// The tile's rows.
    pub height: usize,
    /// The tile's columns.
    pub width: usize,
}

impl TileRegion {
    /// The whole tile.
    pub fn whole(height: usize, width: usize) -> Self {
        Self {
            top: 0,
            bottom: height,
            left: 0,
            right: width,
            height,
            width,
        }
    }

    /// The region's rows and columns in a feature map of `rows` x `cols`.
    fn scaled(&self, rows: usize, cols: usize) -> (usize, usize, usize, usize) {
        let at = |v: usize, of: usize, len: usize| (v * len).div_ceil(of).min(len);
        (
            at(self.top, self.height, rows),
            at(self.bottom, self.height, rows),
            at(self.left, self.width, cols),
            at(self.right, self.width, cols),
        )
    }
}

/// Sums of one group norm call's input per (picture, group), over all recorded tiles.
#[derive(Debug, Clone, Default)]
struct LayerSums {
    sum: Vec<f64>,
    squares: Vec<f64>,
    count: f64,
}

/// Whole-picture group-norm statistics, one entry per group-norm call of a forward pass.
#[derive(Debug, Clone, Default)]
pub struct NormStatistics {
    layers: Vec<LayerSums>,
}

impl NormStatistics {
    /// Number of group-norm calls recorded.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True before anything was recorded.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// The tape of a pass: what it records, and whose statistics it normalises by.
struct Tape {
    /// The statistics being added to, and the region of the tile that counts.
    recording: Option<(NormStatistics, TileRegion)>,
    /// Statistics to normalise by instead of each input's own.
    normalize_by: Option<NormStatistics>,
    /// The index of the next group-norm call.
    next: usize,
}

thread_local! {
    static TAPE: RefCell<Option<Tape>> = const { RefCell::new(None) };
}

/// Puts the tape back to `None` when the closure returns or unwinds.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        TAPE.with(|t| t.borrow_mut().take());
    }
}

/// Runs `f` under `tape` and returns its result and the tape afterwards.
fn with_tape<T, E: From<candle_core::Error>>(
    tape: Tape,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<(T, Tape), E> {
    let guard = TAPE.with(|t| {
        let mut slot = t.borrow_mut();
        if slot.is_some() {
            return Err(candle_core::Error::msg(
                "group-norm statistics: a tape is already installed on this thread",
            ));
        }
        *slot = Some(tape);
        Ok(Installed)
    })?;
    let out = f();
    let tape = TAPE.with(|t| t.borrow_mut().take());
    drop(guard);
    let out = out?;
    let tape = tape.ok_or_else(|| candle_core::Error::msg("group-norm statistics: tape lost"))?;
    Ok((out, tape))
}

/// Runs `f` (one tile's forward pass) with its group norms adding their input's sums over
/// `region` to `stats`; the group norms themselves normalise as usual. The first tile
/// creates the entries, later tiles must make the same calls with the same shapes.
pub fn record<T, E: From<candle_core::Error>>(
    stats: &mut NormStatistics,
    region: TileRegion,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let tape = Tape {
        recording: Some((std::mem::take(stats), region)),
        normalize_by: None,
        next: 0,
    };
    let (out, tape) = with_tape(tape, f)?;
    if let Some((recorded, _)) = tape.recording {
        *stats = recorded;
    }
    if tape.next != stats.layers.len() {
        return Err(candle_core::Error::msg(format!(
            "group-norm statistics: this tile made {} group-norm calls, the first {}",
            tape.next,
            stats.layers.len()
        ))
        .into());
    }
    Ok(out)
}

/// Runs `f` with its k-th group-norm call normalising by the k-th entry of `stats`.
pub fn replay<T, E: From<candle_core::Error>>(
    stats: &NormStatistics,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let tape = Tape {
        recording: None,
        normalize_by: Some(stats.clone()),
        next: 0,
    };
    let (out, tape) = with_tape(tape, f)?;
    if tape.next != stats.layers.len() {
        return Err(candle_core::Error::msg(format!(
            "group-norm statistics: the pass made {} group-norm calls, {} were recorded",
            tape.next,
            stats.layers.len()
        ))
        .into());
    }
    Ok(out)
}

/// What a group norm call does under the current tape.
pub(super) enum Intercept {
    /// No tape, or one that only records: normalise as usual.
    Normal,
    /// Normalise with these per-(picture, group) means and variances.
    Fixed { mean: Vec<f64>, var: Vec<f64> },
}

/// Called by every group norm with its input `[B, C, H, W]` and group count.
pub(super) fn intercept(x: &Tensor, groups: usize) -> Result<Intercept> {
    TAPE.with(|t| {
        let mut slot = t.borrow_mut();
        let Some(tape) = slot.as_mut() else {
            return Ok(Intercept::Normal);
        };
        let call = tape.next;
        tape.next += 1;
        if let Some((stats, region)) = tape.recording.as_mut() {
            let sums = region_sums(x, groups, region)?;
            match stats.layers.get_mut(call) {
                Some(layer) => {
                    if layer.sum.len() != sums.sum.len() {
                        bail!(
                            "group-norm statistics: call {call} has {} groups here, {} before",
                            sums.sum.len(),
                            layer.sum.len()
                        );
                    }
                    for (a, b) in layer.sum.iter_mut().zip(&sums.sum) {
                        *a += b;
                    }
                    for (a, b) in layer.squares.iter_mut().zip(&sums.squares) {
                        *a += b;
                    }
                    layer.count += sums.count;
                }
                None => stats.layers.push(sums),
            }
        }
        let Some(stats) = tape.normalize_by.as_ref() else {
            return Ok(Intercept::Normal);
        };
        let Some(layer) = stats.layers.get(call) else {
            bail!(
                "group-norm statistics: more group-norm calls than the {} recorded",
                stats.layers.len()
            );
        };
        let groups_here = x.dim(0)? * groups;
        if layer.sum.len() != groups_here || layer.count == 0.0 {
            bail!(
                "group-norm statistics: call {call} has {groups_here} groups, {} recorded",
                layer.sum.len()
            );
        }
        let mean: Vec<f64> = layer.sum.iter().map(|s| s / layer.count).collect();
        let var = layer
            .squares
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / layer.count - m * m).max(0.0))
            .collect();
        Ok(Intercept::Fixed { mean, var })
    })
}

/// Sums and sums of squares of `x` `[B, C, H, W]` per (picture, group) over `region`.
fn region_sums(x: &Tensor, groups: usize, region: &TileRegion) -> Result<LayerSums> {
    let (b, _, h, w) = x.dims4()?;
    let (top, bottom, left, right) = region.scaled(h, w);
    let part = x
        .narrow(2, top, bottom - top)?
        .narrow(3, left, right - left)?
        .to_dtype(DType::F64)?
        .reshape((b, groups, ()))?;
    let count = part.dim(2)? as f64;
    let sum = part.sum(2)?.flatten_all()?.to_vec1::<f64>()?;
    let squares = part.sqr()?.sum(2)?.flatten_all()?.to_vec1::<f64>()?;
    Ok(LayerSums {
        sum,
        squares,
        count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::GroupNorm;
    use candle_core::Device;

    /// Statistics recorded over the two halves of a picture, each half counted once,
    /// normalise each half exactly as the whole picture's group norm does.
    #[test]
    fn halves_recorded_then_replayed_equal_the_whole() {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 1.0, (2, 6, 8, 10), &dev).unwrap()
            + Tensor::arange(0f32, 10.0, &dev)
                .unwrap()
                .reshape((1, 1, 1, 10))
                .unwrap()
                .broadcast_as((2, 6, 8, 10))
                .unwrap())
        .unwrap();
        let w = Tensor::randn(1f32, 0.3, 6, &dev).unwrap();
        let bias = Tensor::randn(0f32, 0.3, 6, &dev).unwrap();
        let norm = GroupNorm::from_tensors(w, bias, 3, 1e-5).unwrap();
        let whole = norm.forward_silu(&x).unwrap();
        // Tiles of 6 columns overlapping by 2: columns 0..6 and 4..10, the core of the first
        // 0..5, of the second 1..6 (its columns 5..10).
        let left = x.narrow(3, 0, 6).unwrap();
        let right = x.narrow(3, 4, 6).unwrap();
        let mut stats = NormStatistics::default();
        let region = |l, r| TileRegion {
            left: l,
            right: r,
            ..TileRegion::whole(8, 6)
        };
        record(&mut stats, region(0, 5), || norm.forward(&left)).unwrap();
        record(&mut stats, region(1, 6), || norm.forward(&right)).unwrap();
        assert_eq!(stats.len(), 1);
        for (tile, at) in [(&left, 0), (&right, 4)] {
            let out = replay(&stats, || norm.forward_silu(tile)).unwrap();
            let expect = whole.narrow(3, at, 6).unwrap();
            let d = crate::nn::test_util::max_abs(&(&out - &expect).unwrap());
            assert!(d < 1e-5, "{d}");
            // Without the tape a tile normalises by itself: visibly different.
            let own = norm.forward_silu(tile).unwrap();
            assert!(crate::nn::test_util::max_abs(&(&own - &expect).unwrap()) > 0.1);
        }
        // A pass with more calls than recorded is an error, not a silent reuse.
        let twice = replay(&stats, || norm.forward(&norm.forward(&left)?));
        assert!(twice.is_err());
        // And the tape is gone afterwards.
        assert!(matches!(intercept(&left, 3).unwrap(), Intercept::Normal));
    }
}
