//! Writes a captioned preview grid: `cargo run -p kakusan-data --example preview -- OUT.png
//! [seed] [count] [columns] [held-out]`.

use std::path::PathBuf;

use kakusan_data::{write_preview, Split};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = PathBuf::from(args.first().map_or("preview.png", String::as_str));
    let number = |i: usize, default: u64| -> Result<u64, std::num::ParseIntError> {
        args.get(i).map_or(Ok(default), |s| s.parse())
    };
    let seed = number(1, 0)?;
    let count = number(2, 24)? as usize;
    let columns = number(3, 6)? as usize;
    let split = if args.get(4).is_some_and(|s| s == "held-out") {
        Split::HeldOut
    } else {
        Split::Train
    };
    write_preview(seed, split, count, columns, &path)?;
    Ok(())
}
