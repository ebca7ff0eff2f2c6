//! `kakusan bench`: times each stage of a generation on a model — tokenizer + text encoder,
//! one UNet step with classifier-free guidance (batch 2), VAE decode — and reports the
//! process's peak resident memory.

use std::time::Instant;

use kakusan_pipeline::Job;

use crate::cli::BenchArgs;
use crate::generate::load_model;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    // The size is checked like a generation's: before loading (as given, 512 standing in for
    // a size not given), then against the model's memory estimate before allocating.
    let mut job = Job {
        width: args.width.unwrap_or(512),
        height: args.height.unwrap_or(512),
        ..Job::default()
    };
    job.validate()?;
    let t0 = Instant::now();
    let model = load_model(&args.model)?;
    let load_s = t0.elapsed().as_secs_f64();
    let (dw, dh) = model.default_size();
    let (w, h) = (args.width.unwrap_or(dw), args.height.unwrap_or(dh));
    job.width = w;
    job.height = h;
    model.check_job(&job)?;
    let report = model.bench(w, h, args.steps.max(1))?;
    println!("model: {} ({})", model.name(), model.hash());
    println!("size: {w}x{h}, UNet steps timed: {}", args.steps.max(1));
    println!("{:<34} {:>10}", "stage", "seconds");
    println!("{:<34} {:>10.4}", "load", load_s);
    println!(
        "{:<34} {:>10.4}",
        "tokenize + text encoder (2 prompts)", report.text_encoder_s
    );
    println!(
        "{:<34} {:>10.4}",
        "UNet step (CFG batch 2), mean", report.unet_step_s
    );
    println!(
        "{:<34} {:>10.4}",
        "VAE decode (1 image)", report.vae_decode_s
    );
    match peak_rss_bytes() {
        Some(b) => println!(
            "{:<34} {:>10.1} MiB",
            "peak RSS",
            b as f64 / (1 << 20) as f64
        ),
        None => println!("{:<34} {:>10}", "peak RSS", "unknown"),
    }
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
