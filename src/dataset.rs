//! `kakusan dataset preview|folder`: a captioned grid of the procedural pictures, or a folder
//! of them with `.txt` captions for fine-tuning.

use kakusan_data::dataset::DEFAULT_IMAGE_SIZE;
use kakusan_data::{Dataset, Split};

use crate::cli::{DataChoiceArgs, DatasetCommand};

pub fn run(cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Preview(args) => {
            let data = dataset(&args.data)?;
            kakusan_data::write_preview(&data, args.count, args.columns, &args.out)?;
            println!("{}", args.out.display());
        }
        DatasetCommand::Folder(args) => {
            let data = dataset(&args.data)?;
            let written = kakusan_data::write_captioned_folder(&data, args.count, &args.out)?;
            println!(
                "{} pictures with captions in {}",
                written.len(),
                args.out.display()
            );
        }
    }
    Ok(())
}

fn dataset(args: &DataChoiceArgs) -> anyhow::Result<Dataset> {
    let split = if args.held_out {
        Split::HeldOut
    } else {
        Split::Train
    };
    Ok(Dataset::new(args.seed, split, DEFAULT_IMAGE_SIZE)?
        .with_two_object_fraction(args.two_object_fraction)?
        .with_novel_glyphs(args.novel_glyphs)?)
}
