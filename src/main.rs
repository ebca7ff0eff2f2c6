//! The `kakusan` command line: parses arguments into a `Job`, runs it through the pipeline,
//! shows progress, writes the outputs and turns errors into one line and a non-zero exit.

mod allocator;
mod bench;
mod cli;
mod compare;
mod dataset;
mod eval;
mod generate;
mod info;
mod lab;
mod prompt;
mod threads;
mod train;

use clap::Parser;

fn main() -> std::process::ExitCode {
    allocator::tune_for_tensors();
    threads::fix_thread_count();
    threads::single_threaded_elementwise_ops();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAKUSAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    if matches!(cli.command, cli::Command::Train(_)) {
        allocator::keep_large_buffers_in_heap();
    }
    let result = threads::on_worker_thread(move || match cli.command {
        cli::Command::Generate(args) => generate::run(args),
        cli::Command::Info(args) => info::run(args),
        cli::Command::Bench(args) => bench::run(args),
        cli::Command::Train(cmd) => train::run(cmd),
        cli::Command::Dataset(cmd) => dataset::run(cmd),
        cli::Command::Eval(args) => eval::run(args),
        cli::Command::Prompt(cmd) => prompt::run(cmd),
        cli::Command::Lab(cmd) => lab::run(cmd),
        cli::Command::Samplers => {
            print!("{}", kakusan_sampling::names::listing());
            Ok(())
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause the message already holds
/// and without the backtraces some causes carry in their text (candle's errors do when
/// `RUST_BACKTRACE` is set).
fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = without_backtrace(&cause.to_string());
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

/// `text` up to the first line of a `std::backtrace::Backtrace` display (`   0: symbol`).
fn without_backtrace(text: &str) -> String {
    let mut kept = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let frame_number = trimmed.split_once(": ").map(|(n, _)| n);
        let is_frame = trimmed.len() < line.len()
            && frame_number.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_frame || trimmed == "stack backtrace:" {
            break;
        }
        kept.push(line);
    }
    kept.join("\n").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backtraces_are_cut_from_error_text() {
        let text = "unsupported dtype BF16 for op matmul\n   0: candle_core::error::Error::bt\n             at /x/error.rs:260:25\n   1: f";
        assert_eq!(
            without_backtrace(text),
            "unsupported dtype BF16 for op matmul"
        );
        // An indented line that is not a frame stays.
        let text = "convert it, e.g.\n  python -c \"x: 1\"\nor download it";
        assert_eq!(without_backtrace(text), text);
    }

    #[test]
    fn causes_join_on_one_line() {
        let err = anyhow::anyhow!("inner\n   0: frame").context("outer");
        assert_eq!(one_line(&err), "outer: inner");
    }
}
