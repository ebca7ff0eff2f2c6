"""One full diffusers generation per scheduler family on the tiny SD1 fixture model (issue 5,
item 4): tests/fixtures/scheduler-families-sd1-tiny.{json,safetensors}.

Each run is `StableDiffusionPipeline` on tests/fixtures/sd1-tiny (made by make_fixtures.py)
with its scheduler replaced by `Class.from_config(folder scheduler config)` (what a diffusers
user does, so absent fields take the class's defaults and the folder's `leading` spacing and
`steps_offset 1` carry over), 64x64, 20 steps, CFG 7, the prompts of make_fixtures.py,
`generator=torch.Generator("cpu").manual_seed(42)`, `output_type="latent"`. The pipeline is
built with the scheduler through its constructor, which rewrites `clip_sample: true` (the
class default of DDIM and DDPM) to false, as for every diffusers user who does so.

Recorded per family F (tensor names `family.F.*`): `final_latents` [1, 4, 8, 8],
`timesteps` (`scheduler.timesteps` after the run), `sigmas` where the class has them; the
JSON has the class, its config as used, `init_noise_sigma` and the timesteps the UNet got.

Run: tools/parity/.venv/bin/python tools/parity/make_scheduler_families.py
"""

import json

from parity_common import FIXTURES, deterministic_torch

torch = deterministic_torch()

import diffusers  # noqa: E402
from diffusers import StableDiffusionPipeline  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

PROMPT = "a red circle on a blue background, best quality"
NEGATIVE = "blurry, low quality"
SEED = 42
STEPS = 20
GUIDANCE = 7.0
SIZE = 64

FAMILIES = {
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "dpmpp_sde": "DPMSolverSDEScheduler",
    "lms": "LMSDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
    "lcm": "LCMScheduler",
    "ddpm": "DDPMScheduler",
}


def main():
    folder = FIXTURES / "sd1-tiny"
    pipe = StableDiffusionPipeline.from_pretrained(
        folder,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        dtype=torch.float32,  # the folder stores f16-exact weights as f16
    )
    pipe.set_progress_bar_config(disable=True)
    base_config = pipe.scheduler.config
    tensors = {}
    runs = {}
    for name, cls_name in FAMILIES.items():
        cls = getattr(diffusers, cls_name)
        # DPMSolverSDE seeds its Brownian tree from the global torch RNG unless given a seed;
        # given the image's seed it is k-diffusion's tree, as A1111 and kakusan seed it.
        extra = {"noise_sampler_seed": SEED} if name == "dpmpp_sde" else {}
        try:
            sched = cls.from_config(base_config, **extra)
        except Exception as e:  # e.g. a class that needs a package not installed
            print(f"{name}: {cls_name} unavailable: {e}")
            continue
        # Through the constructor, as diffusers users build a pipeline with another scheduler:
        # it rewrites a `clip_sample: true` (DDIM's and DDPM's class default) to false.
        pipe = StableDiffusionPipeline(**{**pipe.components, "scheduler": sched})
        pipe.set_progress_bar_config(disable=True)
        sched = pipe.scheduler
        fed = []
        orig = pipe.unet.forward

        def fwd(sample, timestep, *a, **k):
            t = timestep if torch.is_tensor(timestep) else torch.tensor(timestep)
            fed.append(float(t.reshape(-1)[0].item()))
            return orig(sample, timestep, *a, **k)

        pipe.unet.forward = fwd
        try:
            with torch.no_grad():
                latents = pipe(
                    prompt=PROMPT,
                    negative_prompt=NEGATIVE,
                    num_inference_steps=STEPS,
                    guidance_scale=GUIDANCE,
                    height=SIZE,
                    width=SIZE,
                    generator=torch.Generator("cpu").manual_seed(SEED),
                    output_type="latent",
                ).images
        except Exception as e:
            print(f"{name}: {cls_name} failed: {e}")
            continue
        finally:
            pipe.unet.forward = orig
        p = f"family.{name}."
        tensors[p + "final_latents"] = latents.float().contiguous()
        tensors[p + "timesteps"] = sched.timesteps.double().contiguous()
        if getattr(sched, "sigmas", None) is not None:
            tensors[p + "sigmas"] = torch.as_tensor(sched.sigmas).double().contiguous()
        # JSON has no infinities: write them as strings ("-inf", diffusers' default of
        # DPMSolverMultistep's lambda_min_clipped).
        config = {
            k: (str(v) if isinstance(v, float) and v in (float("inf"), float("-inf")) else v)
            for k, v in dict(sched.config).items()
        }
        runs[name] = {
            "scheduler": cls_name,
            "scheduler_config": {k: v for k, v in config.items() if not k.startswith("_")},
            "init_noise_sigma": float(sched.init_noise_sigma),
            "timesteps_fed_to_unet": fed,
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE,
            "seed": SEED,
            "steps": STEPS,
            "guidance_scale": GUIDANCE,
            "width": SIZE,
            "height": SIZE,
        }
        print(f"{name}: {cls_name}, {len(fed)} UNet calls, |latents| max {latents.abs().max():.4f}")
    header = {
        "made_by": "tools/parity/make_scheduler_families.py",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "model": "tests/fixtures/sd1-tiny",
        "runs": runs,
    }
    stem = FIXTURES / "scheduler-families-sd1-tiny"
    save_file(tensors, str(stem) + ".safetensors")
    text = json.dumps(header, indent=1, allow_nan=False)
    (stem.parent / (stem.name + ".json")).write_text(text + "\n")
    print(f"wrote {stem}.json/.safetensors: {len(runs)} runs")


if __name__ == "__main__":
    main()
