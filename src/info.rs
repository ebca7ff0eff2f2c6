//! `kakusan info IMAGE.png`: prints the A1111 `parameters` text stored in a PNG.

use anyhow::{anyhow, bail};

use crate::cli::InfoArgs;

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let path = &args.image;
    if !path.exists() {
        bail!("{} does not exist; check the path", path.display());
    }
    if path.is_dir() {
        bail!(
            "{} is a folder; give a PNG file written by kakusan or AUTOMATIC1111",
            path.display()
        );
    }
    let text = kakusan_core::png_meta::read_png_parameters(path).map_err(|e| {
        anyhow!(
            "{e}; `kakusan info` reads the parameters of PNG files written by kakusan or \
             AUTOMATIC1111"
        )
    })?;
    match text {
        Some(text) => {
            println!("{text}");
            Ok(())
        }
        None => bail!(
            "{} holds no generation parameters (no `parameters` text chunk): it was not written \
             by kakusan or AUTOMATIC1111, or its metadata was stripped",
            path.display()
        ),
    }
}
