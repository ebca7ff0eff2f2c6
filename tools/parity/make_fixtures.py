"""Tiny random-weight SD 1.x / 2.x models and the reference intermediates diffusers computes.

Writes, under tests/fixtures/:
  sd1-tiny/, sd2-tiny/                 diffusers folders (save_pretrained, safetensors)
  sd1-tiny.safetensors, sd2-tiny.safetensors   the same weights as original LDM single files
  sd{1,2}-tiny-ref.safetensors + .json  recorded intermediates (README.md lists them)
  sd{1,2}-tiny-ref/*.png                decoded images of the full runs
  img2img-init-64.png                  the img2img init image

Weights: diffusers'/transformers' default initialisation from fixed seeds, rounded to float16
values and stored as float16 (keeps the fixtures small); every reference is computed in float32
from those same values, so loading the f16 files and computing in f32 reproduces them.

Usage: tools/parity/.venv/bin/python tools/parity/make_fixtures.py [--skip-verify]
"""

import argparse
import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import load_file, save_file

from parity_common import FIXTURES, deterministic_torch, import_k_diffusion_sampling

torch = deterministic_torch()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

import ldm_keys  # noqa: E402

diffusers.utils.logging.set_verbosity_error()
# DDIMScheduler.from_config(PNDM config) has clip_sample=True (DDIM's default); the SD pipelines
# warn and rewrite it to False in their __init__. The recorded scheduler_config is the rewritten one.
warnings.filterwarnings("ignore", category=FutureWarning)
transformers.utils.logging.set_verbosity_error()

PROMPT = "a red circle on a blue background, best quality"
NEGATIVE = "blurry, low quality"
SEED = 42
STEPS = 20
GUIDANCE = 7.0
IMG2IMG_STRENGTH = 0.6
BETA_START, BETA_END = 0.00085, 0.012
COND_TOL = 2.5e-6  # a tenth of the 2.5e-5 latents tolerance, relative to the latents' range

VARIANTS = {
    "sd1": {
        "unet": dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=2,
            norm_num_groups=8,
            cross_attention_dim=8,
            attention_head_dim=8,
        ),
        "text": dict(
            hidden_size=8,
            intermediate_size=37,
            num_hidden_layers=3,
            num_attention_heads=2,
            hidden_act="quick_gelu",
            vocab_size=49408,
            max_position_embeddings=77,
            layer_norm_eps=1e-5,
            projection_dim=8,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        ),
        "extra_single_file_layers": 0,
        "pad_token": "<|endoftext|>",
        "prediction_type": "epsilon",
        "scheduler_class": "PNDMScheduler",
    },
    "sd2": {
        "unet": dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(16, 32),
            layers_per_block=2,
            norm_num_groups=8,
            cross_attention_dim=8,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            upcast_attention=True,
        ),
        "text": dict(
            hidden_size=8,
            intermediate_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            hidden_act="gelu",
            vocab_size=49408,
            max_position_embeddings=77,
            layer_norm_eps=1e-5,
            projection_dim=8,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        ),
        "extra_single_file_layers": 1,
        "pad_token": "!",
        "prediction_type": "v_prediction",
        "scheduler_class": "DDIMScheduler",
    },
}

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=2,
    norm_num_groups=4,
    latent_channels=4,
    sample_size=64,
    scaling_factor=0.18215,
)


def round_to_f16(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    return module


def scheduler_for(v):
    common = dict(
        num_train_timesteps=1000,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="scaled_linear",
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=v["prediction_type"],
    )
    if v["scheduler_class"] == "PNDMScheduler":
        return PNDMScheduler(skip_prk_steps=True, **common)
    return DDIMScheduler(clip_sample=False, **common)


def build(name):
    """Builds the components of one variant, seeded, with f16-representable weights."""
    v = VARIANTS[name]
    base_seed = {"sd1": 1000, "sd2": 2000}[name]
    torch.manual_seed(base_seed + 1)
    unet = round_to_f16(UNet2DConditionModel(**v["unet"])).eval()
    torch.manual_seed(base_seed + 2)
    vae = round_to_f16(AutoencoderKL(**VAE_CONFIG)).eval()
    # The single file's text encoder may hold more layers (SD2: all of OpenCLIP's); the
    # diffusers folder holds the model cut to the layers the pipeline uses.
    full_cfg = dict(v["text"])
    full_cfg["num_hidden_layers"] += v["extra_single_file_layers"]
    torch.manual_seed(base_seed + 3)
    text_full = round_to_f16(CLIPTextModel(CLIPTextConfig(**full_cfg))).eval()
    text = CLIPTextModel(CLIPTextConfig(**v["text"])).eval()
    full_sd = text_full.state_dict()
    missing, unexpected = text.load_state_dict(
        {k: t for k, t in full_sd.items() if k in text.state_dict()}, strict=True
    )
    assert not missing and not unexpected
    tokenizer = CLIPTokenizer.from_pretrained(str(FIXTURES / "tokenizer"), pad_token=v["pad_token"])
    return dict(
        unet=unet,
        vae=vae,
        text=text,
        text_full=text_full,
        tokenizer=tokenizer,
        scheduler=scheduler_for(v),
    )


def add_text_model_prefix(path):
    sd = load_file(path)
    if all(k.startswith("text_model.") for k in sd):
        return
    assert not any(k.startswith("text_model.") for k in sd)
    save_file({"text_model." + k: t.contiguous() for k, t in sd.items()}, path, metadata={"format": "pt"})


def strip_text_model_prefix(path):
    sd = load_file(path)
    if not any(k.startswith("text_model.") for k in sd):
        return
    save_file({k.removeprefix("text_model."): t.contiguous() for k, t in sd.items()}, path, metadata={"format": "pt"})


def save_folder(name, comps):
    out = FIXTURES / f"{name}-tiny"
    if out.exists():
        shutil.rmtree(out)
    pipe = StableDiffusionPipeline(
        vae=comps["vae"],
        text_encoder=comps["text"],
        tokenizer=comps["tokenizer"],
        unet=comps["unet"],
        scheduler=comps["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(str(out), safe_serialization=True)
    pipe.to(torch.float32)
    te = out / "text_encoder" / "model.safetensors"
    tok_dir = out / "tokenizer"
    if name == "sd1":
        # Hub / transformers 4 layout: text_model.* keys; vocab.json + merges.txt tokenizer
        # (the two large files are links to tests/fixtures/tokenizer, as in a hub cache).
        add_text_model_prefix(te)
        # ... and a transformers 4 spelling of the dtype in config.json.
        cfg_path = out / "text_encoder" / "config.json"
        with open(cfg_path) as f:
            te_cfg = json.load(f)
        te_cfg["torch_dtype"] = te_cfg.pop("dtype")
        with open(cfg_path, "w") as f:
            json.dump(te_cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        shutil.rmtree(tok_dir)
        tok_dir.mkdir()
        for f in ["vocab.json", "merges.txt"]:
            os.symlink(f"../../tokenizer/{f}", tok_dir / f)
        for f in ["special_tokens_map.json", "tokenizer_config.json"]:
            shutil.copy(FIXTURES / "tokenizer" / f, tok_dir / f)
    else:
        # transformers 5 layout: keys without text_model.; only tokenizer.json + config.
        strip_text_model_prefix(te)
        # Load-time arguments transformers 5 writes into the config; not part of a real folder.
        cfg_path = tok_dir / "tokenizer_config.json"
        with open(cfg_path) as f:
            tok_cfg = json.load(f)
        for k in ("is_local", "local_files_only"):
            tok_cfg.pop(k, None)
        with open(cfg_path, "w") as f:
            json.dump(tok_cfg, f, indent=2)
            f.write("\n")
        for f in tok_dir.iterdir():
            if f.name not in ("tokenizer.json", "tokenizer_config.json"):
                f.unlink()
        assert (tok_dir / "tokenizer.json").exists()
        # Compact JSON: same content, a third of the size.
        with open(tok_dir / "tokenizer.json", encoding="utf-8") as f:
            tj = json.load(f)
        with open(tok_dir / "tokenizer.json", "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    return out


def save_single_file(name, comps, folder):
    v = VARIANTS[name]
    unet_cfg = dict(comps["unet"].config)
    vae_cfg = dict(comps["vae"].config)
    sd = {}
    sd.update(ldm_keys.unet_state(comps["unet"].state_dict(), unet_cfg))
    sd.update(ldm_keys.vae_state(comps["vae"].state_dict(), vae_cfg))
    text_sd = comps["text_full"].state_dict()
    if name == "sd1":
        sd.update(ldm_keys.clip_sd1_state(text_sd))
    else:
        h = v["text"]["hidden_size"]
        g = torch.Generator().manual_seed(7)
        proj = (torch.randn(h, h, generator=g) * h**-0.5).half().float()
        logit_scale = torch.tensor(math.log(1 / 0.07)).half().float()
        n_layers = comps["text_full"].config.num_hidden_layers
        sd.update(ldm_keys.openclip_state(text_sd, n_layers, proj, logit_scale))
    for k, t in ldm_keys.ldm_schedule_buffers(BETA_START, BETA_END).items():
        sd[k] = t
    out = {}
    for k, t in sd.items():
        t = t.detach().contiguous()
        if t.dtype == torch.float32 and k not in ldm_keys.ldm_schedule_buffers(BETA_START, BETA_END):
            t = t.half()
        out[k] = t
    path = FIXTURES / f"{name}-tiny.safetensors"
    save_file(out, str(path), metadata={"format": "pt"})
    return path, out


def verify_single_file(name, path, folder, comps):
    """Loads the single file with diffusers' own converter and compares with the folder."""
    report = {}
    kw = dict(config=str(folder), local_files_only=True, torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_single_file(str(path), subfolder="unet", **kw)
    vae = AutoencoderKL.from_single_file(str(path), subfolder="vae", **kw)
    for comp_name, ours, theirs in [("unet", comps["unet"], unet), ("vae", comps["vae"], vae)]:
        a, b = ours.state_dict(), theirs.state_dict()
        assert set(a) == set(b), (comp_name, set(a) ^ set(b))
        for k in a:
            assert torch.equal(a[k], b[k]), (comp_name, k)
        report[comp_name] = f"diffusers {comp_name.upper()}.from_single_file: all {len(a)} tensors equal"
    try:
        pipe = StableDiffusionPipeline.from_single_file(str(path), **kw)
        te = pipe.text_encoder
        a, b = comps["text"].state_dict(), te.state_dict()
        diff = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
        if diff:
            report["text_encoder"] = (
                f"StableDiffusionPipeline.from_single_file loaded, but {len(diff)} text tensors differ "
                f"(e.g. {diff[:3]})"
            )
        else:
            report["text_encoder"] = f"StableDiffusionPipeline.from_single_file: all {len(a)} text tensors equal"
        for comp_name in ("unet", "vae"):
            a, b = comps[comp_name].state_dict(), getattr(pipe, comp_name).state_dict()
            assert all(torch.equal(a[k], b[k]) for k in a)
    except Exception as e:  # noqa: BLE001 - reported, then checked another way below
        report["text_encoder"] = f"StableDiffusionPipeline.from_single_file failed: {type(e).__name__}: {e}"
    # Our own inverse check of the text mapping, and the SD2 penultimate-layer equivalence.
    report["text_encoder_semantics"] = check_text_single_file(name, path, comps)
    return report


def check_text_single_file(name, path, comps):
    sd = load_file(str(path))
    text_full = comps["text_full"]
    ids = comps["tokenizer"](PROMPT, max_length=77, padding="max_length", truncation=True, return_tensors="pt")
    ids = ids.input_ids
    with torch.no_grad():
        folder_last = comps["text"](ids).last_hidden_state
        full = text_full(ids, output_hidden_states=True)
    if name == "sd1":
        n = 0
        for k, t in text_full.state_dict().items():
            assert torch.equal(sd[ldm_keys.CLIP_PREFIX + k.removeprefix("text_model.")].float(), t), k
            n += 1
        assert torch.equal(full.last_hidden_state, folder_last)
        return f"all {n} CLIP tensors found under {ldm_keys.CLIP_PREFIX} and equal"
    # SD2: rebuild a CLIPTextModel from the OpenCLIP keys by un-fusing q/k/v ourselves.
    p = ldm_keys.OPENCLIP_PREFIX
    h = text_full.config.hidden_size
    rebuilt = {}
    rebuilt["embeddings.token_embedding.weight"] = sd[p + "token_embedding.weight"]
    rebuilt["embeddings.position_embedding.weight"] = sd[p + "positional_embedding"]
    rebuilt["final_layer_norm.weight"] = sd[p + "ln_final.weight"]
    rebuilt["final_layer_norm.bias"] = sd[p + "ln_final.bias"]
    for i in range(text_full.config.num_hidden_layers):
        s, d = f"{p}transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            fused = sd[s + f"attn.in_proj_{kind}"]
            for j, q in enumerate("qkv"):
                rebuilt[d + f"self_attn.{q}_proj.{kind}"] = fused[j * h : (j + 1) * h]
            rebuilt[d + f"self_attn.out_proj.{kind}"] = sd[s + f"attn.out_proj.{kind}"]
            rebuilt[d + f"layer_norm1.{kind}"] = sd[s + f"ln_1.{kind}"]
            rebuilt[d + f"layer_norm2.{kind}"] = sd[s + f"ln_2.{kind}"]
            rebuilt[d + f"mlp.fc1.{kind}"] = sd[s + f"mlp.c_fc.{kind}"]
            rebuilt[d + f"mlp.fc2.{kind}"] = sd[s + f"mlp.c_proj.{kind}"]
    own = text_full.state_dict()
    assert set(rebuilt) == set(own), set(rebuilt) ^ set(own)
    for k in own:
        assert torch.equal(rebuilt[k].float(), own[k]), k
    penult = text_full.final_layer_norm(full.hidden_states[-2])
    assert torch.equal(penult, folder_last), (penult - folder_last).abs().max()
    return (
        f"OpenCLIP keys un-fused back equal all {len(own)} tensors of the "
        f"{text_full.config.num_hidden_layers}-layer encoder; ln_final(penultimate layer) of the single file "
        "== last_hidden_state of the folder's encoder (bit-exact)"
    )


# ----------------------------------------------------------------------------------------
# Recording


class Recorder:
    def __init__(self):
        self.tensors = {}
        self.meta = {}

    def add(self, name, t, desc, **params):
        assert name not in self.tensors, name
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(t))
        t = t.detach().cpu().clone().contiguous()
        if t.is_floating_point():
            t = t.float()
        self.tensors[name] = t
        entry = {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "desc": desc}
        entry.update(params)
        self.meta[name] = entry

    def save(self, stem, header):
        save_file(self.tensors, str(FIXTURES / f"{stem}.safetensors"))
        doc = dict(header)
        doc["tensors"] = self.meta
        with open(FIXTURES / f"{stem}.json", "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")


def tokens(tokenizer, text):
    return tokenizer(text, max_length=77, padding="max_length", truncation=True, return_tensors="pt").input_ids


def init_image_64():
    """A small drawing: gradient sky, a red disc, a green bar, a white square outline."""
    h = w = 64
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 40 + 60 * x / (w - 1)
    img[..., 1] = 80 + 80 * y / (h - 1)
    img[..., 2] = 200 - 50 * y / (h - 1)
    disc = (x - 22) ** 2 + (y - 24) ** 2 <= 11**2
    img[disc] = [220, 30, 40]
    img[48:56, 6:58] = [30, 170, 60]
    img[8:30, 38:60] = [250, 250, 250]
    img[11:27, 41:57] = img[11:27, 41:57] * 0 + [60, 60, 160]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def to_uint8(image_f):
    """diffusers' post-processing: [-1,1] -> clamp to [0,1] -> *255 -> round."""
    x = (image_f / 2 + 0.5).clamp(0, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


class RandnSpy:
    """Wraps diffusers' randn_tensor in the modules that draw noise, recording every draw.

    Optional: perturb the first draw of the pipeline module (conditioning check), and draw in
    float32 whatever dtype is asked (so a float64 run consumes the same random stream).
    """

    MODULES = [
        "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
        "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img",
        "diffusers.models.autoencoders.vae",
        "diffusers.schedulers.scheduling_euler_ancestral_discrete",
        "diffusers.schedulers.scheduling_ddim",
    ]

    def __init__(self, perturb=None, draw_f32=False):
        self.perturb = perturb
        self.draw_f32 = draw_f32
        self.draws = []
        self.saved = {}

    def __enter__(self):
        for modname in self.MODULES:
            mod = sys.modules[modname]
            orig = mod.randn_tensor
            self.saved[modname] = orig
            mod.randn_tensor = self._wrap(modname, orig)
        return self

    def __exit__(self, *exc):
        for modname, orig in self.saved.items():
            sys.modules[modname].randn_tensor = orig

    def _wrap(self, modname, orig):
        def randn(shape, generator=None, device=None, dtype=None, layout=None):
            want = dtype
            t = orig(shape, generator=generator, device=device, dtype=torch.float32 if self.draw_f32 else dtype)
            who = modname.rsplit(".", 1)[-1]
            first_pipeline_draw = who.startswith("pipeline") and not any(
                w.startswith("pipeline") for w, _ in self.draws
            )
            self.draws.append((who, t.clone()))
            if self.perturb is not None and first_pipeline_draw:
                t = t + self.perturb(t)
            return t.to(want) if want is not None else t

        return randn


class UNetSpy:
    """Records the timesteps the pipeline feeds the UNet."""

    def __init__(self, unet):
        self.unet = unet
        self.ts = []

    def __enter__(self):
        self.orig = self.unet.forward

        def fwd(sample, timestep, *a, **k):
            t = timestep if torch.is_tensor(timestep) else torch.tensor(timestep)
            self.ts.append((str(t.dtype).replace("torch.", ""), t.reshape(-1)[0].item(), list(t.shape)))
            return self.orig(sample, timestep, *a, **k)

        self.unet.forward = fwd
        return self

    def __exit__(self, *exc):
        self.unet.forward = self.orig


SCHEDULERS = {
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "ddim": DDIMScheduler,
}


def run_pipeline(pipe, case, spy_kwargs, output_type):
    gens = [torch.Generator("cpu").manual_seed(SEED + i) for i in range(case["batch"])]
    kwargs = dict(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=case.get("steps", STEPS),
        guidance_scale=case.get("guidance", GUIDANCE),
        num_images_per_prompt=case["batch"],
        generator=gens,
        output_type=output_type,
    )
    if case["kind"] == "img2img":
        kwargs["image"] = case["image"]
        kwargs["strength"] = IMG2IMG_STRENGTH
    else:
        kwargs["height"], kwargs["width"] = case["height"], case["width"]
    with RandnSpy(**spy_kwargs) as spy, UNetSpy(pipe.unet) as uspy:
        with torch.no_grad():
            out = pipe(**kwargs).images
    return out, spy.draws, uspy.ts


def record_run(rec, name, comps, case, sched_name, meta_runs, png_dir):
    v_pipe_cls = StableDiffusionImg2ImgPipeline if case["kind"] == "img2img" else StableDiffusionPipeline
    base_sched = comps["scheduler"]
    sched = SCHEDULERS[sched_name].from_config(base_sched.config)
    if case.get("timestep_spacing"):
        sched = SCHEDULERS[sched_name].from_config(base_sched.config, timestep_spacing=case["timestep_spacing"])
    pipe = v_pipe_cls(
        vae=comps["vae"],
        text_encoder=comps["text"],
        tokenizer=comps["tokenizer"],
        unet=comps["unet"],
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    run = f"{case['name']}.{sched_name}"
    p = f"run.{run}."

    # Reference run, latents out (img2img: capture what add_noise got and gave).
    captured = []
    orig_add_noise = sched.add_noise

    def add_noise(original, noise, t):
        result = orig_add_noise(original, noise, t)
        captured.append((original.clone(), noise.clone(), t.clone(), result.clone()))
        return result

    sched.add_noise = add_noise
    try:
        latents, draws, fed = run_pipeline(pipe, case, {}, "latent")
    finally:
        sched.add_noise = orig_add_noise
    # Same run, decoded by the pipeline itself.
    images_np, draws2, _ = run_pipeline(pipe, case, {}, "np")
    assert len(draws) == len(draws2) and all(torch.equal(a[1], b[1]) for a, b in zip(draws, draws2))

    sched_used = pipe.scheduler
    params = dict(
        pipeline=type(pipe).__name__,
        scheduler=type(sched_used).__name__,
        scheduler_config={k: v for k, v in sched_used.config.items() if not k.startswith("_")},
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        steps=case.get("steps", STEPS),
        guidance_scale=case.get("guidance", GUIDANCE),
        seeds=[SEED + i for i in range(case["batch"])],
        generator="one torch.Generator('cpu').manual_seed(seed + i) per image (list)",
        batch=case["batch"],
    )
    if case["kind"] == "img2img":
        params.update(strength=IMG2IMG_STRENGTH, init_image=case["image_file"])
        params["height"] = params["width"] = case["image"].size[0]
    else:
        params.update(height=case["height"], width=case["width"])

    # Noise draws, in the order the pipeline made them.
    pipe_draws = [t for who, t in draws if who.startswith("pipeline")]
    vae_draws = [t for who, t in draws if who == "vae"]
    step_draws = [t for who, t in draws if who.startswith("scheduling")]
    assert len(pipe_draws) == 1
    noise = pipe_draws[0]
    timesteps = sched_used.timesteps.clone()
    used_ts = [t for _, t, _ in fed[:: 1]]
    init_sigma = sched_used.init_noise_sigma
    init_sigma = float(init_sigma)
    run_meta = dict(params)
    run_meta.update(
        init_noise_sigma=init_sigma,
        timesteps_all=[float(t) for t in timesteps],
        timesteps_fed_to_unet=used_ts,
        timestep_dtype_fed_to_unet=fed[0][0],
        timestep_shape_fed_to_unet=fed[0][2],
        unet_calls=len(fed),
    )
    rec.add(p + "noise", noise, "the pipeline's initial noise draw (randn_tensor with the generator list)", run=run)
    if case["kind"] == "img2img":
        assert len(vae_draws) == case["batch"]
        eps = torch.cat(vae_draws)
        rec.add(
            p + "posterior_eps",
            eps,
            "N(0,1) draw of latent_dist.sample(generator[i]), made BEFORE the noise draw from the same generator",
            run=run,
        )
        with torch.no_grad():
            img_t = pipe.image_processor.preprocess(case["image"]).float()
            dist = comps["vae"].encode(img_t).latent_dist
            init_lat = comps["vae"].config.scaling_factor * (dist.mean + dist.std * eps)
        assert len(captured) == 1
        c_orig, c_noise, c_t, initial = captured[0]
        assert torch.equal(c_noise, noise)
        assert torch.allclose(c_orig, init_lat, rtol=0, atol=1e-6), (c_orig - init_lat).abs().max()
        rec.add(p + "init_image", img_t, "preprocessed init image, [-1,1], NCHW", run=run)
        rec.add(p + "init_latents", c_orig, "scaling_factor * (mean + std * posterior_eps), as add_noise got it", run=run)
        begin = len(timesteps) - len(fed)
        run_meta.update(
            begin_index=begin,
            latent_timestep=float(c_t.reshape(-1)[0]),
            add_noise="Euler: init + noise * sigmas[begin]; DDIM: sqrt(ac[t]) * init + sqrt(1 - ac[t]) * noise",
        )
    else:
        initial = noise * sched_used.init_noise_sigma
    rec.add(p + "initial_latents", initial, "latents entering the first step", run=run)
    if hasattr(sched_used, "sigmas"):
        rec.add(p + "sigmas", sched_used.sigmas, "scheduler.sigmas after set_timesteps (with the final 0)", run=run)
    rec.add(p + "timesteps", timesteps.float(), "scheduler.timesteps after set_timesteps (all of them)", run=run)
    if step_draws:
        rec.add(
            p + "step_noise",
            torch.stack(step_draws),
            "per-step noise the sampler drew, [steps, B, 4, h, w] (continues each image's generator)",
            run=run,
        )
    rec.add(p + "final_latents", latents, "latents after the last step (output_type='latent')", run=run)
    with torch.no_grad():
        decoded = comps["vae"].decode(latents / comps["vae"].config.scaling_factor).sample
    u8 = to_uint8(decoded)
    np_u8 = (images_np * 255).round().astype(np.uint8)
    assert np.array_equal(u8, np_u8), "our post-processing differs from the pipeline's"
    if sched_name == "euler":  # float images of the other samplers left out to keep the file small
        rec.add(p + "image", decoded, "vae.decode(final_latents / scaling_factor), raw [-1,1] NCHW", run=run)
    rec.add(p + "image_u8", torch.from_numpy(u8), "uint8 NHWC after clamp((x/2+0.5),0,1)*255 round", run=run)
    pngs = []
    for i in range(u8.shape[0]):
        f = png_dir / f"{case['name']}.{sched_name}.{i}.png"
        Image.fromarray(u8[i]).save(f)
        pngs.append(str(f.relative_to(FIXTURES)))
    run_meta["png"] = pngs

    # Conditioning: a 1e-6 relative perturbation of the initial noise.
    g = torch.Generator().manual_seed(99)

    def perturb(t):
        return 1e-6 * t.abs().max() * (torch.rand(t.shape, generator=g) * 2 - 1)

    lat_p, _, _ = run_pipeline(pipe, case, {"perturb": perturb}, "latent")
    rng = (latents.max() - latents.min()).item()
    moved = ((lat_p - latents).abs().max() / rng).item()
    # fp64 run of the same computation (same random streams, drawn in f32).
    pipe.to(torch.float64)
    try:
        lat64, _, _ = run_pipeline(pipe, case, {"draw_f32": True}, "latent")
    finally:
        pipe.to(torch.float32)
    dev64 = ((lat64 - latents.double()).abs().max() / rng).item()
    run_meta["conditioning"] = dict(
        perturbation="noise += 1e-6 * max|noise| * U(-1,1)",
        final_latents_range=rng,
        moved_rel_to_range=moved,
        well_conditioned=moved < COND_TOL,
        threshold=COND_TOL,
        float64_run_deviation_rel_to_range=dev64,
    )
    meta_runs[run] = run_meta
    print(f"  {run}: moved {moved:.2e} of range, f64 dev {dev64:.2e}, range {rng:.3f}")
    return moved < COND_TOL


def record_kdiffusion(rec, name, comps, header):
    sampling, external = import_k_diffusion_sampling()
    if sampling is None:
        header["k_diffusion"] = "not installed"
        return
    bufs = ldm_keys.ldm_schedule_buffers(BETA_START, BETA_END)
    v = VARIANTS[name]
    unet = comps["unet"]

    class Inner(torch.nn.Module):
        """LDM-style model object: what CompVisDenoiser wraps (apply_model + alphas_cumprod)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("alphas_cumprod", bufs["alphas_cumprod"])
            self.ts = []

        def apply_model(self, x, t, cond):
            self.ts.append(t.clone())
            return unet(x, t, encoder_hidden_states=cond).sample

    inner = Inner()
    den_cls = external.CompVisVDenoiser if v["prediction_type"] == "v_prediction" else external.CompVisDenoiser
    den = den_cls(inner, quantize=False)
    n = STEPS
    sig_normal = den.get_sigmas(n)
    smin, smax = den.sigma_min.item(), den.sigma_max.item()
    sig_karras = sampling.get_sigmas_karras(n, smin, smax, rho=7.0)
    sig_exp = sampling.get_sigmas_exponential(n, smin, smax)
    kp = "kdiff."
    rec.add(kp + "alphas_cumprod", bufs["alphas_cumprod"], "LDM alphas_cumprod (computed in f64, stored f32)")
    rec.add(kp + "sigmas_normal", sig_normal, f"CompVisDenoiser.get_sigmas({n}): t=linspace(999,0,n), log-sigma interp, +0")
    rec.add(kp + "sigmas_karras", sig_karras, f"get_sigmas_karras({n}, sigma_min, sigma_max, rho=7)")
    rec.add(kp + "sigmas_exponential", sig_exp, f"get_sigmas_exponential({n}, sigma_min, sigma_max)")
    info = dict(
        version="k-diffusion 0.1.1.post1 (sampling/external only)",
        denoiser=den_cls.__name__ + "(quantize=False)",
        sigma_min=smin,
        sigma_max=smax,
    )

    # Two deterministic k-diffusion runs with CFG (the A1111 / ComfyUI convention):
    # x = randn(seed) * sigmas[0]; fractional t fed to the UNet.
    tok = comps["tokenizer"]
    with torch.no_grad():
        cond = comps["text"](tokens(tok, PROMPT)).last_hidden_state
        uncond = comps["text"](tokens(tok, NEGATIVE)).last_hidden_state

    def cfg_model(x, sigma):
        x_in = torch.cat([x] * 2)
        s_in = torch.cat([sigma] * 2)
        c_in = torch.cat([uncond.expand(x.shape[0], -1, -1), cond.expand(x.shape[0], -1, -1)])
        out_u, out_c = den(x_in, s_in, cond=c_in).chunk(2)
        return out_u + (out_c - out_u) * GUIDANCE

    runs = {}
    for run_name, sampler, sigmas in [
        ("euler_normal", sampling.sample_euler, sig_normal),
        ("dpmpp_2m_karras", sampling.sample_dpmpp_2m, sig_karras),
    ]:
        gen = torch.Generator("cpu").manual_seed(SEED)
        noise = torch.randn((1, 4, 8, 8), generator=gen)
        x0 = noise * sigmas[0]
        inner.ts = []
        with torch.no_grad():
            out = sampler(cfg_model, x0, sigmas, disable=True)
            noise_p = noise + 1e-6 * noise.abs().max() * (torch.rand(noise.shape, generator=torch.Generator().manual_seed(99)) * 2 - 1)
            out_p = sampler(cfg_model, noise_p * sigmas[0], sigmas, disable=True)
        rng = (out.max() - out.min()).item()
        moved = ((out_p - out).abs().max() / rng).item()
        ts = [float(t[0]) for t in inner.ts[: len(sigmas) * 2]]
        rp = f"kdiff.run.{run_name}."
        rec.add(rp + "sigmas", sigmas, "sigmas used")
        rec.add(rp + "noise", noise, "torch.Generator('cpu').manual_seed(42); randn([1,4,8,8])")
        rec.add(rp + "final_latents", out, "latents after the run (x0 of the last step)")
        runs[run_name] = dict(
            sampler=sampler.__name__,
            seed=SEED,
            steps=n,
            guidance_scale=GUIDANCE,
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=64,
            width=64,
            initial_latents="noise * sigmas[0] (no sqrt(sigma^2+1))",
            cfg="uncond + (cond - uncond) * scale, one batched call [uncond; cond]",
            timesteps_fed_to_unet_first=ts[:4],
            unet_calls=len(inner.ts),
            conditioning=dict(moved_rel_to_range=moved, well_conditioned=moved < COND_TOL, final_latents_range=rng),
        )
        print(f"  kdiff {run_name}: moved {moved:.2e} of range")
    info["runs"] = runs
    header["k_diffusion"] = info


def record_reference(name, comps, folder):
    rec = Recorder()
    tok, text, unet, vae = comps["tokenizer"], comps["text"], comps["unet"], comps["vae"]
    v = VARIANTS[name]
    header = dict(
        model=f"{name}-tiny",
        folder=f"{name}-tiny/",
        single_file=f"{name}-tiny.safetensors",
        versions=dict(torch=torch.__version__, diffusers=diffusers.__version__, transformers=transformers.__version__),
        dtype="all float tensors float32, computed in float32 on CPU (1 thread) from the f16-valued weights",
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        prediction_type=v["prediction_type"],
    )
    # a) tokens and text embeddings
    with torch.no_grad():
        for key, text_in in [("prompt", PROMPT), ("negative", NEGATIVE)]:
            ids = tokens(tok, text_in)
            rec.add(f"tokens.{key}", ids, f"token ids of {text_in!r} (max_length 77, padded with {v['pad_token']!r})")
            out = text(ids, output_hidden_states=True)
            rec.add(f"text.{key}.last_hidden_state", out.last_hidden_state, "text encoder last_hidden_state (final LN applied)")
            pen = text.final_layer_norm(out.hidden_states[-2])
            rec.add(
                f"text.{key}.penultimate",
                pen,
                "final_layer_norm(hidden_states[-2]): clip skip 2 (A1111) == diffusers clip_skip=1",
            )
        empty = tokens(tok, "")
        rec.add("tokens.empty", empty, "token ids of ''")
        rec.add("text.empty.last_hidden_state", text(empty).last_hidden_state, "embedding of the empty prompt")

        # b) one UNet forward
        ctx = torch.cat([rec.tensors["text.negative.last_hidden_state"], rec.tensors["text.prompt.last_hidden_state"]])
        g = torch.Generator("cpu").manual_seed(1)
        x = torch.randn((2, 4, 8, 8), generator=g)
        rec.add("unet.x", x, "UNet input sample [2,4,8,8] (torch.Generator seed 1)")
        rec.add("unet.context", ctx, "encoder_hidden_states = [negative; prompt] last_hidden_state")
        for tname, tv in [("t417_25", [417.25, 417.25]), ("t500", [500.0, 500.0]), ("t999_0_5", [999.0, 0.5])]:
            t = torch.tensor(tv, dtype=torch.float32)
            rec.add(f"unet.{tname}.timestep", t, "timestep [B] f32 (fractional allowed)")
            rec.add(f"unet.{tname}.out", unet(x, t, encoder_hidden_states=ctx).sample, "UNet output (eps or v)")
        g = torch.Generator("cpu").manual_seed(2)
        x5 = torch.randn((1, 4, 5, 8), generator=g)
        t = torch.tensor([250.5])
        rec.add("unet.odd.x", x5, "UNet input with an odd latent height 5 (40 px): upsample to the skip size")
        rec.add("unet.odd.timestep", t, "timestep")
        rec.add("unet.odd.out", unet(x5, t, encoder_hidden_states=ctx[1:]).sample, "UNet output, context = prompt")

        # c) VAE
        img = init_image_64()
        img_t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        rec.add("vae.encode.image", img_t, "image in [-1,1] NCHW (img2img-init-64.png / 127.5 - 1)")
        dist = vae.encode(img_t).latent_dist
        rec.add("vae.encode.mean", dist.mean, "latent_dist.mean (before scaling_factor)")
        rec.add("vae.encode.logvar", dist.logvar, "latent_dist.logvar (clamped to [-30, 20] by diffusers)")
        rec.add("vae.encode.std", dist.std, "exp(0.5 * logvar)")
        g = torch.Generator("cpu").manual_seed(3)
        z = torch.randn((1, 4, 8, 8), generator=g)
        rec.add("vae.decode.z", z, "decoder input, already divided by scaling_factor (torch.Generator seed 3)")
        rec.add("vae.decode.image", vae.decode(z).sample, "raw decoder output (nominally [-1,1])")
        z_odd = torch.randn((1, 4, 5, 8), generator=g)
        rec.add("vae.decode.z_odd", z_odd, "decoder input [1,4,5,8] (continues seed-3 stream)")
        rec.add("vae.decode.image_odd", vae.decode(z_odd).sample, "raw decoder output [1,3,40,64]")

        # d) initial noise as the pipeline draws it
        for shape, seeds in [((1, 4, 8, 8), [SEED]), ((2, 4, 8, 8), [SEED, SEED + 1]), ((1, 4, 5, 8), [SEED])]:
            gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
            from diffusers.utils.torch_utils import randn_tensor

            nz = randn_tensor(shape, generator=gens, dtype=torch.float32)
            nm = f"noise.seed{seeds[0]}.{'x'.join(map(str, shape))}"
            rec.add(nm, nz, f"randn_tensor({list(shape)}, generator=[Generator('cpu').manual_seed(s) for s in {seeds}])")

    # e) full runs
    png_dir = FIXTURES / f"{name}-tiny-ref"
    if png_dir.exists():
        shutil.rmtree(png_dir)
    png_dir.mkdir()
    init_png = FIXTURES / "img2img-init-64.png"
    Image.fromarray(init_image_64()).save(init_png)
    init_pil = Image.open(init_png).convert("RGB")
    cases = [
        dict(name="txt2img_64", kind="txt2img", batch=1, height=64, width=64),
        dict(name="txt2img_64_batch2", kind="txt2img", batch=2, height=64, width=64),
        dict(name="txt2img_64x40", kind="txt2img", batch=1, height=40, width=64),
        dict(name="img2img_64", kind="img2img", batch=1, image=init_pil, image_file=init_png.name),
    ]
    runs = {}
    all_ok = True
    for case in cases:
        for sched_name in SCHEDULERS:
            all_ok &= record_run(rec, name, comps, case, sched_name, runs, png_dir)
    # Euler with "linspace" spacing: fractional timesteps, the diffusers analogue of "normal".
    case = dict(name="txt2img_64_linspace", kind="txt2img", batch=1, height=64, width=64, timestep_spacing="linspace")
    all_ok &= record_run(rec, name, comps, case, "euler", runs, png_dir)
    header["runs"] = runs
    header["all_runs_well_conditioned"] = all_ok
    record_kdiffusion(rec, name, comps, header)
    return rec, header


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-verify", action="store_true")
    ap.add_argument("--only", choices=list(VARIANTS), default=None)
    args = ap.parse_args()
    for name in VARIANTS:
        if args.only and name != args.only:
            continue
        print(f"== {name}")
        comps = build(name)
        folder = save_folder(name, comps)
        # Compute everything from the folder as diffusers loads it (f16 files -> f32).
        pipe = StableDiffusionPipeline.from_pretrained(str(folder), torch_dtype=torch.float32, local_files_only=True)
        for k in ("unet", "vae"):
            a, b = comps[k].state_dict(), getattr(pipe, k).state_dict()
            assert all(torch.equal(a[x], b[x]) for x in a), k
        a, b = comps["text"].state_dict(), pipe.text_encoder.state_dict()
        assert set(a) == set(b) and all(torch.equal(a[x], b[x]) for x in a), "text encoder reload"
        comps["text"], comps["unet"], comps["vae"] = pipe.text_encoder.eval(), pipe.unet.eval(), pipe.vae.eval()
        comps["tokenizer"] = pipe.tokenizer
        comps["scheduler"] = pipe.scheduler
        path, _ = save_single_file(name, comps, folder)
        verify = {} if args.skip_verify else verify_single_file(name, path, folder, comps)
        for k, msg in verify.items():
            print(f"  verify {k}: {msg}")
        rec, header = record_reference(name, comps, folder)
        header["single_file_verification"] = verify
        header["configs"] = dict(
            unet=dict(comps["unet"].config),
            vae=dict(comps["vae"].config),
            text_encoder=comps["text"].config.to_dict(),
            text_encoder_single_file_layers=comps["text_full"].config.num_hidden_layers,
            scheduler=dict(comps["scheduler"].config),
        )
        rec.save(f"{name}-tiny-ref", json.loads(json.dumps(header, default=str)))
        print(f"  wrote {name}-tiny-ref ({len(rec.tensors)} tensors)")


if __name__ == "__main__":
    main()
