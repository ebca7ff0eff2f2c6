//! Trains and measures the evaluator without the CLI (the CLI's `kakusan train classifier`
//! and `kakusan eval` do the same through the library).
//!
//! ```text
//! cargo run --release -p kakusan-eval --example classifier -- train CONFIG.toml OUT [--resume] [--steps N]
//! cargo run --release -p kakusan-eval --example classifier -- measure MODEL_DIR [N] [SEED]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use kakusan_data::Split;
use kakusan_eval::{accuracy, novel_glyph_accuracy, pair_accuracy, train_classifier, Evaluator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("train") if args.len() >= 3 => {
            let resume = args.iter().any(|a| a == "--resume");
            let steps = args
                .iter()
                .position(|a| a == "--steps")
                .and_then(|i| args.get(i + 1))
                .map(|s| s.parse::<u64>())
                .transpose()?;
            let started = Instant::now();
            let mut last = Instant::now();
            let run = train_classifier(
                &PathBuf::from(&args[1]),
                &PathBuf::from(&args[2]),
                resume,
                steps,
                None,
                &mut |r| {
                    if r.step % 10 == 0 {
                        println!(
                            "step {}/{} loss {:.4} lr {:.2e} {:.2} s/step, {:.0} s",
                            r.step,
                            r.total,
                            r.loss,
                            r.lr,
                            last.elapsed().as_secs_f64() / 10.0,
                            started.elapsed().as_secs_f64()
                        );
                        last = Instant::now();
                    }
                },
            )?;
            println!("exported step {} to {}", run.step, run.model_dir.display());
            measure(&run.model_dir, 2000, 99)
        }
        Some("measure") if args.len() >= 2 => {
            let n = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2000);
            let seed = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(99);
            measure(&PathBuf::from(&args[1]), n, seed)
        }
        _ => Err(
            "usage: classifier train CONFIG OUT [--resume] [--steps N] | measure DIR [N] [SEED]"
                .into(),
        ),
    }
}

fn measure(dir: &std::path::Path, n: usize, seed: u64) -> Result<(), Box<dyn std::error::Error>> {
    let evaluator = Evaluator::load(dir)?;
    let started = Instant::now();
    let single = accuracy(evaluator.classifier(), Split::HeldOut, n, seed)?;
    println!("held-out, one object: {single}");
    let pairs = pair_accuracy(evaluator.classifier(), Split::HeldOut, n / 4, seed)?;
    println!("held-out, two objects (masked halves): {pairs}");
    let novel = novel_glyph_accuracy(evaluator.classifier(), Split::HeldOut, n / 4, seed)?;
    println!("held-out, one novel glyph (moon): {novel}");
    let train = accuracy(evaluator.classifier(), Split::Train, n / 4, seed)?;
    println!("train split, one object: {train}");
    println!("measured in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
