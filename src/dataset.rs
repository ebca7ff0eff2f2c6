//! `kakusan dataset preview`: a captioned grid of the procedural training pictures.

use kakusan_data::Split;

use crate::cli::DatasetCommand;

pub fn run(cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Preview(args) => {
            let split = if args.held_out {
                Split::HeldOut
            } else {
                Split::Train
            };
            kakusan_data::write_preview(args.seed, split, args.count, args.columns, &args.out)?;
            println!("{}", args.out.display());
            Ok(())
        }
    }
}
