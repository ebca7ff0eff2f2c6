"""Checks that diffusers loads a kakusan-trained diffusers folder (kakusan-mini) and, for the
same prompt, seed and sampler, computes the latents kakusan computed.

Usage:
    python tools/parity/check_mini.py MODEL_DIR --kakusan PATH/TO/kakusan [--steps 20]

It runs `kakusan generate ... --schedule model --save-latents` and diffusers'
StableDiffusionPipeline with the folder's Euler scheduler, both in float32 on the CPU with
torch.Generator('cpu').manual_seed(seed), and compares the final latents within
fidelity.md's 2.5e-5 of max(1, max|ref|). Exit status 0 when they agree.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from parity_common import deterministic_torch

TOL = 2.5e-5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--kakusan", type=Path, required=True)
    ap.add_argument("--prompt", default="a red 5 on a blue background")
    ap.add_argument("--negative", default="")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=7.0)
    args = ap.parse_args()

    torch = deterministic_torch()
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from safetensors.torch import load_file

    pipe = StableDiffusionPipeline.from_pretrained(
        str(args.model), torch_dtype=torch.float32, safety_checker=None
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    unet_cfg = json.loads((args.model / "unet" / "config.json").read_text())
    vae_cfg = json.loads((args.model / "vae" / "config.json").read_text())
    factor = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    size = unet_cfg["sample_size"] * factor
    gen = torch.Generator("cpu").manual_seed(args.seed)
    ref = pipe(
        args.prompt,
        negative_prompt=args.negative or None,
        num_inference_steps=args.steps,
        guidance_scale=args.cfg,
        height=size,
        width=size,
        generator=[gen],
        output_type="latent",
    ).images.float()

    with tempfile.TemporaryDirectory() as tmp:
        latents = Path(tmp) / "latents.safetensors"
        cmd = [
            str(args.kakusan), "generate", args.prompt, "--negative", args.negative,
            "--model", str(args.model), "--seed", str(args.seed), "--steps", str(args.steps),
            "--cfg", str(args.cfg), "--sampler", "Euler", "--schedule", "model",
            "--width", str(size), "--height", str(size), "--output-dir", tmp,
            "--save-latents", str(latents),
        ]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ours = load_file(str(latents))["latents"].float()

    scale = max(1.0, ref.abs().max().item())
    err = (ours - ref).abs().max().item() / scale
    print(f"final latents: max |kakusan - diffusers| / max(1, max|ref|) = {err:.3e} (tolerance {TOL})")
    return 0 if err <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
