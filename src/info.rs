//! `kakusan info IMAGE.png`: prints the A1111 `parameters` text stored in a PNG.

use anyhow::{bail, Context};

use crate::cli::InfoArgs;

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let text = kakusan_core::png_meta::read_png_parameters(&args.image)
        .with_context(|| format!("reading {}", args.image.display()))?;
    match text {
        Some(text) => {
            println!("{text}");
            Ok(())
        }
        None => bail!(
            "{} holds no generation parameters (no `parameters` text chunk)",
            args.image.display()
        ),
    }
}
