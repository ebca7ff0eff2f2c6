//! What picture the classifier sees for each object of a scene.
//!
//! - **One object**: the whole picture.
//! - **Two objects** (kakusan-data draws pairs side by side for "left of" and stacked for
//!   "above", each object inside its own half): one view per object, the picture with the
//!   *other* half painted over in the background colour. The view is then an ordinary
//!   one-object picture (the object at the left / right / top / bottom position, at the
//!   pair's slightly smaller scale), so the same five heads read it; the training task mixes
//!   such views in, so pair-scale objects are in the classifier's training distribution.
//!
//! The paint is the per-channel median of the kept half: the background covers well over
//! half of every half (an object of a pair covers less than a fifth of it), so the median
//! is the background colour, for generated pictures as for rendered ones, with no label
//! needed.

use image::{Rgb, RgbImage};
use kakusan_data::{Relation, Sample};

use crate::attribute::{labels, Labels};

/// The view of object `object` (0: the left or upper one, 1: the right or lower one) of a
/// two-object picture whose objects stand in `relation`.
pub fn object_view(image: &RgbImage, relation: Relation, object: usize) -> RgbImage {
    let (width, height) = image.dimensions();
    let keep_first = object == 0;
    // Whether pixel (x, y) lies in the half of the kept object.
    let kept = |x: u32, y: u32| -> bool {
        let first_half = match relation {
            Relation::LeftOf => 2 * x < width,
            Relation::Above => 2 * y < height,
        };
        first_half == keep_first
    };
    let mut histograms = [[0u32; 256]; 3];
    let mut count = 0u32;
    for (x, y, pixel) in image.enumerate_pixels() {
        if kept(x, y) {
            for (histogram, &value) in histograms.iter_mut().zip(&pixel.0) {
                histogram[usize::from(value)] += 1;
            }
            count += 1;
        }
    }
    let paint = Rgb(histograms.map(|h| median(&h, count)));
    let mut view = image.clone();
    for (x, y, pixel) in view.enumerate_pixels_mut() {
        if !kept(x, y) {
            *pixel = paint;
        }
    }
    view
}

/// Both objects' views of a two-object picture, first (left / upper) object first.
pub fn object_views(image: &RgbImage, relation: Relation) -> [RgbImage; 2] {
    [0, 1].map(|k| object_view(image, relation, k))
}

/// The lower median of `count` values given by their histogram.
fn median(histogram: &[u32; 256], count: u32) -> u8 {
    let half = count.div_ceil(2);
    let mut seen = 0;
    for (value, &n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= half && n > 0 {
            return value as u8;
        }
    }
    0
}

/// Every view of a sample with its labels: the picture itself for one object, both masked
/// halves for two (see the module docs).
pub fn labelled_views(sample: &Sample) -> Vec<(RgbImage, Labels)> {
    let scene = &sample.scene;
    match (scene.objects.as_slice(), scene.relation()) {
        ([a, b], Some(relation)) => {
            let [va, vb] = object_views(&sample.image, relation);
            vec![
                (va, labels(a, scene.background)),
                (vb, labels(b, scene.background)),
            ]
        }
        (objects, _) => objects
            .first()
            .map(|o| vec![(sample.image.clone(), labels(o, scene.background))])
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kakusan_data::{Dataset, Split};

    #[test]
    fn a_masked_half_looks_like_a_single_object_on_the_background() {
        let data = Dataset::new(5, Split::Train, 64)
            .unwrap()
            .with_two_object_fraction(1.0)
            .unwrap();
        for i in 0..20 {
            let sample = data.sample(i);
            let relation = sample.scene.relation().unwrap();
            let views = labelled_views(&sample);
            assert_eq!(views.len(), 2);
            let background =
                kakusan_data::render::tinted(sample.scene.background, sample.scene.background_tint);
            for (k, (view, _)) in views.iter().enumerate() {
                // The masked half is exactly the background colour...
                let (x, y) = match (relation, k) {
                    (Relation::LeftOf, 0) => (60, 32),
                    (Relation::LeftOf, _) => (3, 32),
                    (Relation::Above, 0) => (32, 60),
                    (Relation::Above, _) => (32, 3),
                };
                assert_eq!(view.get_pixel(x, y).0, background, "sample {i} view {k}");
                // ...and the kept half is untouched.
                let (kx, ky) = match (relation, k) {
                    (Relation::LeftOf, 0) => (16, 32),
                    (Relation::LeftOf, _) => (48, 32),
                    (Relation::Above, 0) => (32, 16),
                    (Relation::Above, _) => (32, 48),
                };
                assert_eq!(view.get_pixel(kx, ky), sample.image.get_pixel(kx, ky));
            }
        }
    }

    #[test]
    fn a_single_object_is_seen_whole() {
        let data = Dataset::new(5, Split::Train, 64)
            .unwrap()
            .with_two_object_fraction(0.0)
            .unwrap();
        let sample = data.sample(3);
        let views = labelled_views(&sample);
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].0, sample.image);
    }
}
