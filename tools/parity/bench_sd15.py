"""CPU performance baseline: kakusan against diffusers/PyTorch on a full-size SD 1.5 shape.

Runs, one after the other and each in its own fresh process (so that peak RSS is per tool):
  diffusers  a worker process of this script: StableDiffusionPipeline.from_pretrained (f32),
             tokenize + text encoder for 2 prompts, UNet forward with CFG (batch 2) at the
             latent size of WIDTHxHEIGHT (1 warm-up, then the mean of N), VAE decode of one latent.
  kakusan    `kakusan bench --model DIR --width W --height H --steps N` (src/bench.rs), which
             times the same stages the same way.
and prints a markdown table: stage, kakusan s, diffusers s, ratio kakusan/diffusers, and peak
RSS of each process (from wait4's rusage, and the tool's own VmHWM). The same table goes to
--out. The machine's core count and load average before/after each run are recorded: on a
shared machine, read the numbers in that context.

The model is the random-weight folder made by make_sd15_random.py (the weights do not change
the cost of a forward pass).

Usage:
  tools/parity/.venv/bin/python tools/parity/bench_sd15.py --model /work/sd15-random \
      --kakusan target/release/kakusan [--steps 3] [--repeat 1] [--width 512 --height 512] [--out FILE]
      [--kakusan-dtype bf16]
On a GPU (issue 8 item 7: kakusan against diffusers fp16 on the same card):
  python3 tools/parity/bench_sd15.py --model DIR --kakusan BIN --device cuda \
      --kakusan-dtype f16 --diffusers-dtype f16
Each timed GPU stage ends with a device synchronisation in both tools; the table then also
gives UNet it/s (1 / step time) and diffusers' peak GPU memory (torch's allocator).
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPT = "a photograph of an astronaut riding a horse"
WORKER_TAG = "BENCH_RESULT "


def proc_status_bytes(field):
    """A memory field of /proc/self/status (VmHWM: peak RSS, VmRSS: current RSS) in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------- diffusers worker


def diffusers_worker(args):
    """Runs in a child process; prints one JSON line tagged WORKER_TAG."""
    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import diffusers
    import transformers
    from diffusers import StableDiffusionPipeline

    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    res = {"threads": torch.get_num_threads(), "torch": torch.__version__, "diffusers": diffusers.__version__}
    device = torch.device(args.device)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.diffusers_dtype]
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(
        args.model, dtype=dtype, local_files_only=True, safety_checker=None,
        requires_safety_checker=False,
    ).to(device)
    sync()
    res["load_s"] = time.perf_counter() - t
    # diffusers maps the safetensors files; weight pages are read on first use, so the RSS
    # right after loading shows how much of the load was deferred to the first forward passes.
    res["rss_after_load_bytes"] = proc_status_bytes("VmRSS")
    res["attn_processor"] = type(next(iter(pipe.unet.attn_processors.values()))).__name__
    tok, text, unet, vae = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae

    def encode(prompt):
        ids = tok(prompt, max_length=tok.model_max_length, padding="max_length", truncation=True,
                  return_tensors="pt").input_ids
        return text(ids.to(device))[0]

    with torch.inference_mode():
        t = time.perf_counter()
        cond = encode(PROMPT)
        uncond = encode("")
        sync()
        res["text_encoder_s"] = time.perf_counter() - t
        context = torch.cat([uncond, cond])

        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((1, vae.config.latent_channels, args.height // scale, args.width // scale), generator=gen)
        x = x.to(device=device, dtype=dtype)
        ts = torch.full((2,), 500.0, device=device)

        def guided_step():
            eps = unet(torch.cat([x, x]), ts, encoder_hidden_states=context).sample
            e_u, e_c = eps.chunk(2)
            return e_u + 7.0 * (e_c - e_u)

        guided_step()  # warm-up
        sync()
        times = []
        for _ in range(args.steps):
            t = time.perf_counter()
            out = guided_step()
            sync()
            times.append(time.perf_counter() - t)
        res["unet_step_s"] = sum(times) / len(times)
        res["unet_step_all_s"] = times
        res["unet_out_max_abs"] = float(out.abs().max())

        t = time.perf_counter()
        img = vae.decode(x).sample.float()
        sync()
        res["vae_decode_s"] = time.perf_counter() - t
        res["vae_out_shape"] = list(img.shape)
        res["vae_out_max_abs"] = float(img.abs().max())
        res["finite"] = bool(torch.isfinite(out).all() and torch.isfinite(img).all())
    res["vm_hwm_bytes"] = proc_status_bytes("VmHWM")
    if device.type == "cuda":
        res["gpu_peak_bytes"] = torch.cuda.max_memory_allocated(device)
    print(WORKER_TAG + json.dumps(res), flush=True)


# ---------------------------------------------------------------------------- parent


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_child(cmd):
    """Runs cmd to completion: return code, stdout+stderr text, wall s, peak RSS and CPU s."""
    before = loadavg()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Read the output while it runs (a full pipe would block the child), then reap it with
    # wait4 for this child's own rusage (ru_maxrss in KiB on Linux).
    output = proc.stdout.read().decode("utf-8", errors="replace")
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    return dict(rc=proc.returncode, output=output, wall_s=wall, maxrss_bytes=usage.ru_maxrss * 1024,
                cpu_s=usage.ru_utime + usage.ru_stime, load_before=before, load_after=loadavg())


KAKUSAN_ROWS = {
    "load": "load_s",
    "tokenize + text encoder (2 prompts)": "text_encoder_s",
    "UNet step (CFG batch 2), mean": "unet_step_s",
    "VAE decode (1 image)": "vae_decode_s",
}


def parse_kakusan(output):
    """Parses `kakusan bench`'s table (src/bench.rs): '<stage>  <seconds>' and 'peak RSS  <x> MiB'."""
    res = {}
    for line in output.splitlines():
        line = line.strip()
        for label, key in KAKUSAN_ROWS.items():
            m = re.fullmatch(re.escape(label) + r"\s+([0-9.eE+-]+)", line)
            if m:
                res[key] = float(m.group(1))
        m = re.fullmatch(r"peak RSS\s+([0-9.]+) MiB", line)
        if m:
            res["vm_hwm_bytes"] = float(m.group(1)) * 2**20
        m = re.fullmatch(r"model: (.*)", line)
        if m:
            res["model"] = m.group(1)
    missing = [k for k in KAKUSAN_ROWS.values() if k not in res]
    if missing:
        raise ValueError(f"kakusan bench output lacks {missing}:\n{output}")
    return res


def git_describe(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fmt_s(v):
    return "n/a" if v is None else f"{v:.3f}"


def fmt_mib(v):
    return "n/a" if v is None else f"{v / 2**20:.0f} MiB"


def fmt_its(v):
    return "n/a" if v is None else f"{v:.2f}"


def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="diffusers folder (make_sd15_random.py)")
    ap.add_argument("--kakusan", help="path to the release kakusan binary")
    ap.add_argument("--steps", type=int, default=3, help="timed UNet steps after 1 warm-up (default 3)")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--out", default="/work/bench-sd15.md", help="markdown table output file")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of both tools, alternating which goes first; the table shows each "
                         "stage's minimum over the rounds (default 1)")
    ap.add_argument("--order", choices=["diffusers-first", "kakusan-first"], default="diffusers-first")
    ap.add_argument("--skip-diffusers", action="store_true")
    ap.add_argument("--kakusan-dtype", default="f32", choices=["f32", "bf16", "f16"],
                    help="kakusan's --dtype (issue 8 compares kakusan bf16 against diffusers f32 "
                         "on the CPU)")
    ap.add_argument("--diffusers-dtype", default="f32", choices=["f32", "bf16", "f16"],
                    help="diffusers' dtype (default f32; f16 on a GPU)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="where both tools run (default cpu)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.steps = max(1, args.steps)

    if args.worker:
        diffusers_worker(args)
        return
    if not args.kakusan:
        ap.error("--kakusan is required")

    def run_diffusers():
        if args.skip_diffusers:
            return None
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--model", args.model,
               "--steps", str(args.steps), "--width", str(args.width), "--height", str(args.height),
               "--threads", str(args.threads), "--device", args.device,
               "--diffusers-dtype", args.diffusers_dtype]
        print(f"[diffusers] {' '.join(cmd)}", file=sys.stderr, flush=True)
        r = run_child(cmd)
        lines = [ln for ln in r["output"].splitlines() if ln.startswith(WORKER_TAG)]
        if r["rc"] != 0 or not lines:
            sys.exit(f"diffusers worker failed (rc {r['rc']}):\n{r['output']}")
        r["res"] = json.loads(lines[-1][len(WORKER_TAG):])
        return r

    def run_kakusan():
        cmd = [args.kakusan, "bench", "--model", args.model, "--width", str(args.width),
               "--height", str(args.height), "--steps", str(args.steps),
               "--dtype", args.kakusan_dtype, "--device", args.device]
        print(f"[kakusan] {' '.join(cmd)}", file=sys.stderr, flush=True)
        r = run_child(cmd)
        if r["rc"] != 0:
            # Keep going: diffusers' numbers are still worth a table (a GPU run is one shot).
            print(f"kakusan bench failed (rc {r['rc']}):\n{r['output']}", file=sys.stderr, flush=True)
            r["res"] = {}
            return r
        r["res"] = parse_kakusan(r["output"])
        return r

    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ds, ks = [], []
    first_d = args.order == "diffusers-first"
    for rnd in range(max(1, args.repeat)):
        print(f"round {rnd + 1}/{args.repeat}", file=sys.stderr, flush=True)
        for tool in (("diffusers", "kakusan") if first_d else ("kakusan", "diffusers")):
            r = run_diffusers() if tool == "diffusers" else run_kakusan()
            if r is None:
                continue
            (ds if tool == "diffusers" else ks).append(r)
            print(f"[{tool}] done in {r['wall_s']:.1f} s (load average {r['load_before']} -> "
                  f"{r['load_after']})", file=sys.stderr, flush=True)
        first_d = not first_d

    def best(runs, key):
        vals = [r["res"][key] for r in runs if key in r["res"]]
        return min(vals) if vals else None

    def best_top(runs, key, agg=min):
        return agg(r[key] for r in runs) if runs else None

    rows = [
        ("load", "load_s"),
        ("tokenize + text encoder (2 prompts, batch 1 each)", "text_encoder_s"),
        ("UNet step, CFG batch 2, mean of N", "unet_step_s"),
        ("VAE decode, 1 latent to 1 image", "vae_decode_s"),
    ]
    rounds = len(ks)
    out = []
    where = "CPU" if args.device == "cpu" else f"{args.device} ({(ds[0]['res'].get('gpu') if ds else None) or 'GPU'})"
    out.append(f"SD 1.5-shaped model, random f32 weights (kakusan --dtype {args.kakusan_dtype}, "
               f"diffusers {args.diffusers_dtype}), {args.width}x{args.height} "
               f"(latent {args.width // 8}x{args.height // 8}), {where}, N = {args.steps} timed UNet steps "
               f"after 1 warm-up; {rounds} round(s), each figure the minimum over the rounds; "
               f"run {started}.")
    out.append("")
    out.append("| stage | kakusan s | diffusers s | ratio kakusan/diffusers |")
    out.append("|---|---:|---:|---:|")
    for label, key in rows:
        kv, dv = best(ks, key), best(ds, key)
        out.append(f"| {label} | {fmt_s(kv)} | {fmt_s(dv)} | {ratio(kv, dv)} |")
    kv, dv = best(ks, "unet_step_s"), best(ds, "unet_step_s")
    k_its, d_its = (None if kv is None else 1 / kv), (None if dv is None else 1 / dv)
    out.append(f"| UNet it/s (1 / step; CFG batch 2) | {fmt_its(k_its)} | {fmt_its(d_its)} | "
               f"{ratio(k_its, d_its)} |")
    if ds and ds[0]["res"].get("gpu_peak_bytes"):
        out.append(f"| peak GPU memory (diffusers: torch max_memory_allocated) | n/a | "
                   f"{fmt_mib(max(r['res'].get('gpu_peak_bytes') or 0 for r in ds))} | n/a |")
    k_rss, d_rss = best_top(ks, "maxrss_bytes", max), best_top(ds, "maxrss_bytes", max)
    out.append(f"| peak RSS (wait4 ru_maxrss, max over rounds) | {fmt_mib(k_rss)} | {fmt_mib(d_rss)} | "
               f"{ratio(k_rss, d_rss)} |")
    kw, dw = best_top(ks, "wall_s"), best_top(ds, "wall_s")
    out.append(f"| process wall time (incl. start-up) | {fmt_s(kw)} | {fmt_s(dw)} | {ratio(kw, dw)} |")
    kc, dc = best_top(ks, "cpu_s"), best_top(ds, "cpu_s")
    out.append(f"| process CPU time, user + sys | {fmt_s(kc)} | {fmt_s(dc)} | {ratio(kc, dc)} |")
    out.append("")
    out.append("Context:")
    out.append(f"- machine: {cpu_model()}, nproc {os.cpu_count()}, "
               f"RAM {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB")
    out.append(f"- kakusan: {args.kakusan} ({git_describe(args.kakusan)}); own VmHWM "
               f"{fmt_mib(max((r['res'].get('vm_hwm_bytes') or 0) for r in ks))}")
    if ds:
        d0 = ds[0]["res"]
        out.append(f"- diffusers {d0['diffusers']} / torch {d0['torch']}, {d0['threads']} threads, "
                   f"attention {d0['attn_processor']}; own VmHWM "
                   f"{fmt_mib(max((r['res'].get('vm_hwm_bytes') or 0) for r in ds))}; RSS right after "
                   f"from_pretrained {fmt_mib(d0.get('rss_after_load_bytes'))} (weights are "
                   f"memory-mapped and read on first use, so part of diffusers' load cost lands in its "
                   f"text encoder call and UNet warm-up); outputs finite: {d0['finite']} "
                   f"(max |eps| {d0['unet_out_max_abs']:.3g}, max |image| {d0['vae_out_max_abs']:.3g})")
    out.append("- rounds (load average 1/5/15 min before -> after each process; the machine is shared):")
    out.append("")
    out.append("| round | tool | load s | text s | UNet step s | VAE s | wall s | CPU s | CPU/wall | load average |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, runs in (("kakusan", ks), ("diffusers", ds)):
        for n, r in enumerate(runs, 1):
            x = r["res"]
            unet = fmt_s(x.get("unet_step_s"))
            if "unet_step_all_s" in x:
                unet += " (" + ", ".join(f"{t:.2f}" for t in x["unet_step_all_s"]) + ")"
            out.append(f"| {n} | {name} | {fmt_s(x.get('load_s'))} | {fmt_s(x.get('text_encoder_s'))} | "
                       f"{unet} | {fmt_s(x.get('vae_decode_s'))} | {fmt_s(r['wall_s'])} | "
                       f"{fmt_s(r['cpu_s'])} | {r['cpu_s'] / r['wall_s']:.2f} | "
                       f"{r['load_before']} -> {r['load_after']} |")
    text = "\n".join(out) + "\n"
    print(text)
    print("--- kakusan output (last round) ---\n" + ks[-1]["output"].strip(), file=sys.stderr)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
