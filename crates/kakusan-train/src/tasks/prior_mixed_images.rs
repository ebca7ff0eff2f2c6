//! Prior preservation for fine-tuning: the subject's pictures (a `--data` folder) with a
//! fixed share of "prior" pictures mixed in: pictures like the ones the model was trained on
//! (the procedural data set, or a folder of regularisation pictures as kohya's `reg_data_dir`),
//! so that learning the subject does not make the model forget what it could draw (DreamBooth's
//! prior-preservation, at the data level).
//!
//! The mix is exact and deterministic: of the first `n` indices, `floor(n * fraction)` are
//! prior pictures, spread evenly (every batch has its share, rounded), and the subject's
//! pictures keep their own index order (so its epochs still visit every entry).

use image::RgbImage;

use super::caption_probe::CaptionLabels;
use super::captioned_images::CaptionedImages;
use crate::error::{Result, TrainError};

/// A subject source with a share of prior pictures interleaved.
pub struct PriorMixedImages {
    subject: Box<dyn CaptionedImages>,
    prior: Box<dyn CaptionedImages>,
    fraction: f64,
}

/// Which source an index of the mix reads, and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pick {
    Subject(u64),
    Prior(u64),
}

impl PriorMixedImages {
    /// `fraction` of the pictures come from `prior`: at least 0, below 1 (the subject must
    /// appear).
    pub fn new(
        subject: Box<dyn CaptionedImages>,
        prior: Box<dyn CaptionedImages>,
        fraction: f64,
    ) -> Result<Self> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(TrainError::Config(format!(
                "--prior-fraction {fraction}: must be at least 0 and below 1 (the share of \
                 prior pictures in each batch; the rest are the --data pictures)"
            )));
        }
        Ok(Self {
            subject,
            prior,
            fraction,
        })
    }

    /// Prior pictures among indices `0..n`.
    fn priors_before(&self, n: u64) -> u64 {
        (n as f64 * self.fraction).floor() as u64
    }

    fn pick(&self, index: u64) -> Pick {
        let before = self.priors_before(index);
        if self.priors_before(index + 1) > before {
            Pick::Prior(before)
        } else {
            Pick::Subject(index - before)
        }
    }
}

impl CaptionedImages for PriorMixedImages {
    fn get(&self, index: u64) -> (RgbImage, String) {
        match self.pick(index) {
            Pick::Subject(i) => self.subject.get(i),
            Pick::Prior(i) => self.prior.get(i),
        }
    }

    fn labels(&self, index: u64) -> Option<CaptionLabels> {
        match self.pick(index) {
            Pick::Subject(i) => self.subject.labels(i),
            Pick::Prior(i) => self.prior.labels(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pictures whose caption names the source and the index asked.
    struct Named(&'static str);

    impl CaptionedImages for Named {
        fn get(&self, index: u64) -> (RgbImage, String) {
            (RgbImage::new(1, 1), format!("{} {index}", self.0))
        }
    }

    fn mix(fraction: f64) -> PriorMixedImages {
        PriorMixedImages::new(
            Box::new(Named("subject")),
            Box::new(Named("prior")),
            fraction,
        )
        .unwrap()
    }

    fn captions(m: &PriorMixedImages, n: u64) -> Vec<String> {
        (0..n).map(|i| m.get(i).1).collect()
    }

    #[test]
    fn shares_are_exact_and_spread_evenly() {
        let m = mix(0.25);
        let c = captions(&m, 8);
        assert_eq!(
            c,
            [
                "subject 0",
                "subject 1",
                "subject 2",
                "prior 0",
                "subject 3",
                "subject 4",
                "subject 5",
                "prior 1"
            ]
        );
        // Every batch of 32 in the first thousand steps has exactly its share at 0.5, and
        // each source's indices run on without a gap or a repeat.
        let m = mix(0.5);
        let all = captions(&m, 32 * 1000);
        for batch in all.chunks(32) {
            assert_eq!(batch.iter().filter(|c| c.starts_with("prior")).count(), 16);
        }
        for source in ["subject", "prior"] {
            let idx: Vec<u64> = all
                .iter()
                .filter_map(|c| c.strip_prefix(source))
                .map(|n| n.trim().parse().unwrap())
                .collect();
            assert_eq!(idx, (0..16_000).collect::<Vec<_>>());
        }
        // An odd share: 0.3 of 1000 indices are prior pictures.
        let m = mix(0.3);
        let priors = captions(&m, 1000)
            .iter()
            .filter(|c| c.starts_with("prior"))
            .count();
        assert_eq!(priors, 300);
    }

    #[test]
    fn zero_is_the_subject_alone_and_bad_fractions_are_refused() {
        let m = mix(0.0);
        assert!(captions(&m, 50).iter().all(|c| c.starts_with("subject")));
        for bad in [1.0, 1.5, -0.1, f64::NAN] {
            let err = PriorMixedImages::new(Box::new(Named("s")), Box::new(Named("p")), bad)
                .err()
                .expect("refused");
            assert!(err.to_string().contains("--prior-fraction"), "{err}");
        }
    }
}
