//! A folder of procedural pictures with their captions in the layout fine-tuning tools read
//! (kohya / DreamBooth): `NNNNNN.png` next to `NNNNNN.txt` holding the caption, so that
//! `kakusan train unet --from MODEL --data DIR` can learn from it.

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::DataError;

/// The most pictures one call writes.
pub const MAX_FOLDER_SAMPLES: usize = 100_000;

/// Writes samples `0..count` of `dataset` into `dir` (created if missing) as
/// `000000.png` + `000000.txt`, … and returns the picture paths. Refuses to overwrite: when
/// any of the files already exists nothing is written.
pub fn write_captioned_folder(
    dataset: &Dataset,
    count: usize,
    dir: &Path,
) -> Result<Vec<PathBuf>, DataError> {
    if count == 0 || count > MAX_FOLDER_SAMPLES {
        return Err(DataError::FolderCount {
            count,
            maximum: MAX_FOLDER_SAMPLES,
        });
    }
    let names: Vec<(PathBuf, PathBuf)> = (0..count)
        .map(|i| {
            let stem = dir.join(format!("{i:06}"));
            (stem.with_extension("png"), stem.with_extension("txt"))
        })
        .collect();
    if let Some(existing) = names
        .iter()
        .flat_map(|(png, txt)| [png, txt])
        .find(|p| p.exists())
    {
        return Err(DataError::WouldOverwrite(existing.clone()));
    }
    std::fs::create_dir_all(dir).map_err(|e| DataError::Io(dir.to_path_buf(), e))?;
    for (i, (png, txt)) in names.iter().enumerate() {
        let sample = dataset.sample(i as u64);
        kakusan_core::png_meta::write_png(png, &sample.image)?;
        std::fs::write(txt, format!("{}\n", sample.caption))
            .map_err(|e| DataError::Io(txt.clone(), e))?;
    }
    Ok(names.into_iter().map(|(png, _)| png).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::Split;

    #[test]
    fn pictures_and_captions_in_pairs_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let data = Dataset::new(5, Split::Train, 32).unwrap();
        let written = write_captioned_folder(&data, 3, dir.path()).unwrap();
        assert_eq!(written.len(), 3);
        for (i, png) in written.iter().enumerate() {
            let image = image::open(png).unwrap().to_rgb8();
            assert_eq!(image.as_raw(), data.sample(i as u64).image.as_raw());
            let caption = std::fs::read_to_string(png.with_extension("txt")).unwrap();
            assert_eq!(caption.trim_end(), data.sample(i as u64).caption);
        }
        let before = std::fs::read(&written[0]).unwrap();
        let err = write_captioned_folder(&data, 5, dir.path()).unwrap_err();
        assert!(err.to_string().contains("000000.png"), "{err}");
        assert_eq!(std::fs::read(&written[0]).unwrap(), before);
        assert!(!dir.path().join("000003.png").exists());
        assert!(write_captioned_folder(&data, 0, dir.path()).is_err());
    }
}
