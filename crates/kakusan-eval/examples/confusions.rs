//! Lists the glyph mistakes of a classifier folder on held-out one-object pictures (seed 99):
//! `cargo run --release -p kakusan-eval --example confusions -- MODEL_DIR [N]`.
use kakusan_data::{Dataset, Split};
use kakusan_eval::Evaluator;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let evaluator = Evaluator::load(std::path::Path::new(&args[0]))?;
    let n: u64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let data = Dataset::new(99, Split::HeldOut, 64)?.with_two_object_fraction(0.0)?;
    let samples = data.batch(0, n as usize);
    let images: Vec<_> = samples.iter().map(|s| s.image.clone()).collect();
    let predictions = evaluator.classify(&images)?;
    let mut counts = std::collections::BTreeMap::new();
    for (s, p) in samples.iter().zip(&predictions) {
        let o = &s.scene.objects[0];
        if p.glyph != o.glyph {
            *counts
                .entry(format!("{} {} -> {}", o.colour, o.glyph, p.glyph))
                .or_insert(0) += 1;
        }
    }
    for (k, v) in counts {
        println!("{v:4} {k}");
    }
    Ok(())
}
