//! A folder of pictures with captions, for fine-tuning (`kakusan train unet --data DIR`), in
//! the layout DreamBooth and kohya users know:
//!
//! - every picture (`.png`, `.jpg`, `.jpeg`, `.webp`, `.bmp`) has its caption in a `.txt`
//!   file of the same stem beside it (first non-empty line is used);
//! - pictures may sit in subfolders named `N_concept` (kohya): each is repeated `N` times per
//!   epoch, and a picture without a `.txt` there is captioned `concept`;
//! - pictures are resized to the training size with A1111's "Just resize".
//!
//! Pictures are read once, at start. Index `i` falls in epoch `i / len`; every epoch visits
//! all (repeated) entries in an order shuffled from the seed and the epoch, so a step's batch
//! depends only on the step, as the trainer's resume needs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use image::RgbImage;
use kakusan_core::rng::TorchCpuGenerator;

use super::captioned_images::CaptionedImages;
use crate::error::{io_at, Result, TrainError};

const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "webp", "bmp"];

/// The pictures of a folder with their captions, each entry repeated as its folder says.
pub struct FolderImages {
    /// Distinct pictures and captions.
    items: Vec<(RgbImage, String)>,
    /// Indices into `items`, one per repeat.
    entries: Vec<usize>,
    seed: u64,
    /// The shuffled order of the epoch asked for last (a batch's pictures share one).
    order: Mutex<Option<(u64, Arc<Vec<usize>>)>>,
}

impl FolderImages {
    /// Reads every picture under `dir` (and its `N_concept` subfolders), resized to
    /// `size`×`size`.
    pub fn open(dir: &Path, size: u32, seed: u64) -> Result<Self> {
        if !dir.is_dir() {
            return Err(TrainError::Config(format!(
                "{}: not a folder of pictures with .txt captions",
                dir.display()
            )));
        }
        let mut items = Vec::new();
        let mut entries = Vec::new();
        let mut folders = vec![(dir.to_path_buf(), 1usize, None::<String>)];
        for entry in sorted_entries(dir)? {
            if entry.is_dir() {
                let name = entry
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if let Some((repeats, concept)) = kohya_folder(&name) {
                    folders.push((entry, repeats, Some(concept)));
                }
            }
        }
        for (folder, repeats, concept) in folders {
            for path in sorted_entries(&folder)? {
                if !is_image(&path) {
                    continue;
                }
                let caption = match read_caption(&path)? {
                    Some(c) => c,
                    None => concept.clone().ok_or_else(|| {
                        TrainError::Config(format!(
                            "{} has no caption: put it in {}",
                            path.display(),
                            path.with_extension("txt").display()
                        ))
                    })?,
                };
                let image = kakusan_core::image_io::load_image(&path)
                    .map_err(|e| TrainError::Config(e.to_string()))?;
                let image = kakusan_core::image_io::resize_just(&image, size, size);
                entries.extend(std::iter::repeat_n(items.len(), repeats));
                items.push((image, caption));
            }
        }
        if items.is_empty() {
            return Err(TrainError::Config(format!(
                "{}: no pictures ({}) found",
                dir.display(),
                IMAGE_EXTENSIONS.join(", ")
            )));
        }
        Ok(Self {
            items,
            entries,
            seed,
            order: Mutex::new(None),
        })
    }

    /// Number of distinct pictures.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Entries per epoch (pictures times their repeats).
    pub fn epoch_len(&self) -> usize {
        self.entries.len()
    }

    /// The order of entries in `epoch`: a Fisher-Yates shuffle from the seed and the epoch.
    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order = self.entries.clone();
        let mut gen = TorchCpuGenerator::new(self.seed.wrapping_mul(1_000_003).wrapping_add(epoch));
        for i in (1..order.len()).rev() {
            let j = (gen.next_u32() as usize) % (i + 1);
            order.swap(i, j);
        }
        order
    }
}

impl CaptionedImages for FolderImages {
    fn get(&self, index: u64) -> (RgbImage, String) {
        let n = self.entries.len() as u64;
        let epoch = index / n;
        let order = {
            // A poisoned lock only means another thread panicked mid-update of this cache:
            // the value is rebuilt below if it is not this epoch's.
            let mut cached = self.order.lock().unwrap_or_else(|e| e.into_inner());
            match &*cached {
                Some((e, order)) if *e == epoch => order.clone(),
                _ => {
                    let order = Arc::new(self.epoch_order(epoch));
                    *cached = Some((epoch, order.clone()));
                    order
                }
            }
        };
        let item = order[(index % n) as usize];
        self.items[item].clone()
    }
}

/// The entries of `dir`, sorted by name (the order must not depend on the file system).
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        out.push(entry.map_err(io_at(dir))?.path());
    }
    out.sort();
    Ok(out)
}

fn is_image(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// `N_concept` -> (N, "concept") for N >= 1.
fn kohya_folder(name: &str) -> Option<(usize, String)> {
    let (n, concept) = name.split_once('_')?;
    let n: usize = n.parse().ok()?;
    (n >= 1 && !concept.trim().is_empty()).then(|| (n, concept.trim().to_string()))
}

/// The first non-empty line of the picture's `.txt`, if there is one.
fn read_caption(image: &Path) -> Result<Option<String>> {
    let txt = image.with_extension("txt");
    if !txt.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&txt).map_err(io_at(&txt))?;
    Ok(text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, rgb: [u8; 3], size: u32) {
        let img = RgbImage::from_pixel(size, size, image::Rgb(rgb));
        img.save(path).unwrap();
    }

    #[test]
    fn reads_captions_repeats_and_resizes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write_png(&dir.join("a.png"), [255, 0, 0], 32);
        std::fs::write(dir.join("a.txt"), "\n  a red square  \nignored\n").unwrap();
        // Not a picture, not a kohya folder: both ignored.
        std::fs::write(dir.join("notes.md"), "x").unwrap();
        std::fs::create_dir(dir.join("misc")).unwrap();
        write_png(&dir.join("misc").join("z.png"), [0, 0, 0], 8);
        let sub = dir.join("3_hexagon");
        std::fs::create_dir(&sub).unwrap();
        write_png(&sub.join("h.png"), [0, 255, 0], 16);

        let data = FolderImages::open(dir, 8, 5).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data.epoch_len(), 4);
        // One epoch holds a once and h three times, resized to 8x8.
        let epoch: Vec<(RgbImage, String)> = (0..4).map(|i| data.get(i)).collect();
        assert!(epoch.iter().all(|(img, _)| img.dimensions() == (8, 8)));
        let reds = epoch.iter().filter(|(_, c)| c == "a red square").count();
        let hexes = epoch.iter().filter(|(_, c)| c == "hexagon").count();
        assert_eq!((reds, hexes), (1, 3));
        // Deterministic, and epochs differ only in order.
        let again = FolderImages::open(dir, 8, 5).unwrap();
        for i in 0..12 {
            assert_eq!(data.get(i).1, again.get(i).1);
        }
    }

    #[test]
    fn bad_folders_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let err = FolderImages::open(&tmp.path().join("missing"), 8, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a folder"), "{err}");
        let err = FolderImages::open(tmp.path(), 8, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no pictures"), "{err}");
        write_png(&tmp.path().join("b.png"), [1, 2, 3], 4);
        let err = FolderImages::open(tmp.path(), 8, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no caption") && err.contains("b.txt"), "{err}");
        std::fs::write(tmp.path().join("b.txt"), "ok").unwrap();
        std::fs::write(tmp.path().join("c.png"), b"not a png").unwrap();
        std::fs::write(tmp.path().join("c.txt"), "broken").unwrap();
        let err = FolderImages::open(tmp.path(), 8, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("c.png"), "{err}");
    }
}
