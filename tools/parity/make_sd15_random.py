"""A full-size SD 1.5-shaped diffusers folder with random weights, for benchmarks.

Same configs as the hub's runwayml/stable-diffusion-v1-5 (UNet 320/640/1280/1280 with
cross-attention 768, VAE 128/256/512/512, 12-layer 768-wide quick_gelu CLIP text encoder,
PNDM scheduler config), weights from diffusers'/transformers' default initialisation with fixed
torch seeds, stored as float32 safetensors (~4 GiB), the hub's layout (text_model.* keys,
vocab.json + merges.txt tokenizer copied from tests/fixtures/tokenizer).

The weights are meaningless: the folder is only for timing and memory (BENCHMARKS.md).
Never commit it.

Usage: tools/parity/.venv/bin/python tools/parity/make_sd15_random.py OUT_DIR [--seed 1500]
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from parity_common import FIXTURES, deterministic_torch

torch = deterministic_torch()
torch.set_num_threads(os.cpu_count() or 1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

from make_fixtures import add_text_model_prefix  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
transformers.utils.logging.set_verbosity_error()

UNET_CONFIG = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    norm_num_groups=32,
    latent_channels=4,
    sample_size=512,
    scaling_factor=0.18215,
)

TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    attention_dropout=0.0,
    dropout=0.0,
    initializer_range=0.02,
    initializer_factor=1.0,
    projection_dim=768,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)

# runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json (+ the two fields diffusers
# now writes with their defaults).
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=1500)
    args = ap.parse_args()
    out = args.out_dir.resolve()
    if (out / ".git").exists() or str(out).startswith(str(FIXTURES.parents[1])):
        sys.exit(f"refusing to write ~4 GiB of random weights inside the repository: {out}")

    torch.manual_seed(args.seed + 1)
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    torch.manual_seed(args.seed + 2)
    vae = AutoencoderKL(**VAE_CONFIG).eval()
    torch.manual_seed(args.seed + 3)
    text = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG)).eval()
    tokenizer = CLIPTokenizer.from_pretrained(str(FIXTURES / "tokenizer"))
    scheduler = PNDMScheduler.from_config({k: v for k, v in SCHEDULER_CONFIG.items() if k != "clip_sample"})
    for name, m in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        n = sum(p.numel() for p in m.parameters())
        print(f"{name}: {n / 1e6:.1f} M parameters")

    if out.exists():
        shutil.rmtree(out)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)

    # Hub layout: text_model.* keys, torch_dtype in config.json, vocab.json + merges.txt.
    add_text_model_prefix(out / "text_encoder" / "model.safetensors")
    cfg_path = out / "text_encoder" / "config.json"
    with open(cfg_path) as f:
        te_cfg = json.load(f)
    if "dtype" in te_cfg:
        te_cfg["torch_dtype"] = te_cfg.pop("dtype")
    write_json(cfg_path, te_cfg)
    tok_dir = out / "tokenizer"
    shutil.rmtree(tok_dir)
    tok_dir.mkdir()
    for f in ["vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"]:
        shutil.copy(FIXTURES / "tokenizer" / f, tok_dir / f)
    write_json(out / "scheduler" / "scheduler_config.json", SCHEDULER_CONFIG)

    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({total / 2**30:.2f} GiB)")


if __name__ == "__main__":
    main()
