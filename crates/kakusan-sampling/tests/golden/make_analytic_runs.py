"""Golden runs of diffusers' schedulers and k-diffusion's samplers on an analytic model.

The "network" is the exact denoiser of data distributed N(mu, s^2) per element:
x0_hat = (s^2 x + sigma^2 mu) / (s^2 + sigma^2) in k-diffusion scaling, returned as eps
(or v) the way the scheduler expects it; sigma is recovered from the timestep the scheduler
feeds (np.interp over the scheduler's own sigma table, exact at integer timesteps). No UNet,
so the runs isolate the schedulers' conventions: timesteps, init_noise_sigma, scale_model_input,
the step formulas, when noise is drawn from the per-image generators, DDIM's unscaled output.

Writes analytic_runs.json next to this file. Run with the parity venv (torch 2.14.1,
diffusers 0.42.1, k-diffusion 0.1.1.post1):
    /work/wt/parity/tools/parity/.venv/bin/python make_analytic_runs.py
"""

import importlib
import importlib.util
import json
import pathlib
import sys
import types

import numpy as np
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

def _k_diffusion():
    # k_diffusion/__init__.py pulls in training-only packages (skimage, clip, ...); load just
    # the two modules used here under an empty package object.
    spec = importlib.util.find_spec("k_diffusion")
    package = types.ModuleType("k_diffusion")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules.setdefault("k_diffusion", package)
    return importlib.import_module("k_diffusion.sampling"), importlib.import_module("k_diffusion.external")


ks, _external = _k_diffusion()
CompVisDenoiser = _external.CompVisDenoiser

torch.set_num_threads(1)
HERE = pathlib.Path(__file__).parent
S = 0.5  # data standard deviation
SHAPE = (4, 4, 4)  # one image's latent [C, H, W]

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def mu_like(batch):
    # A fixed, non-constant mean: mu[c, h, w] = 0.3 * sin(c + 2h + 3w), the same per image.
    c, h, w = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    mu = 0.3 * np.sin(c + 2 * h + 3 * w)
    return torch.tensor(np.broadcast_to(mu, (batch,) + SHAPE).copy(), dtype=torch.float32)


def exact_x0(x, sigma, mu):
    return (S * S * x + sigma * sigma * mu) / (S * S + sigma * sigma)


class AnalyticUNet:
    """eps or v from the input the scheduler gives the UNet (x_in = x / sqrt(sigma^2 + 1))."""

    def __init__(self, scheduler, prediction, mu):
        ac = scheduler.alphas_cumprod.numpy().astype(np.float64)
        self.table = ((1 - ac) / ac) ** 0.5
        self.prediction = prediction
        self.mu = mu.double()

    def __call__(self, x_in, t):
        t = float(t)
        sigma = float(np.interp(t, np.arange(len(self.table)), self.table))
        x = x_in.double() * (sigma * sigma + 1) ** 0.5
        x0 = exact_x0(x, sigma, self.mu)
        eps = (x - x0) / sigma
        if self.prediction == "epsilon":
            out = eps
        else:
            alpha = 1 / (sigma * sigma + 1) ** 0.5
            out = alpha * eps - (1 - alpha * alpha) ** 0.5 * x0
        return out.float()


def diffusers_run(name, cls, config, steps, seeds, eta=None, strength=None):
    sched = cls.from_config({**SD_BETAS, **config})
    sched.set_timesteps(steps)
    batch = len(seeds)
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    mu = mu_like(batch)
    model = AnalyticUNet(sched, config.get("prediction_type", "epsilon"), mu)
    shape = (batch,) + SHAPE
    record = dict(name=name, scheduler=cls.__name__, config=dict(sched.config), steps=steps, seeds=seeds)
    timesteps = sched.timesteps
    if strength is None:
        noise = randn_tensor(shape, generator=gens)
        latents = noise * sched.init_noise_sigma
    else:
        # img2img: a fixed "clean" latent (mu + 0.2), then noise at the first kept timestep.
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        timesteps = sched.timesteps[t_start * sched.order:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(t_start * sched.order)
        init = mu + 0.2
        noise = randn_tensor(shape, generator=gens)
        latents = sched.add_noise(init, noise, timesteps[:1].repeat(batch))
        record.update(strength=strength, init_offset=0.2, begin_index=t_start)
    record["initial_latents"] = latents.flatten().tolist()
    kwargs = {}
    if cls is EulerAncestralDiscreteScheduler:
        kwargs["generator"] = gens
    if cls is DDIMScheduler:
        kwargs["eta"] = eta or 0.0
        if eta:
            kwargs["generator"] = gens
    for t in timesteps:
        x_in = sched.scale_model_input(latents, t)
        out = model(x_in, t)
        latents = sched.step(out, t, latents, **kwargs).prev_sample
    record.update(
        eta=eta,
        timesteps=[float(t) for t in timesteps],
        init_noise_sigma=float(sched.init_noise_sigma),
        final_latents=latents.flatten().tolist(),
        # What each generator draws next: proves how many numbers the run consumed.
        next_draw=[torch.randn(4, generator=g).tolist() for g in gens],
    )
    return record


def kdiff_run(name, sampler, steps, seeds):
    # LDM table (float64 then float32), as A1111 holds it.
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.tensor(np.cumprod(1 - betas.numpy()), dtype=torch.float32)

    class Inner:
        alphas_cumprod = ac

        def apply_model(self, x_in, t, **kwargs):
            raise NotImplementedError

    den = CompVisDenoiser(Inner())
    batch = len(seeds)
    mu = mu_like(batch)
    sigmas = den.get_sigmas(steps)
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    noise = torch.cat([torch.randn((1,) + SHAPE, generator=g) for g in gens])
    x = noise * sigmas[0]

    def model(x, sigma):
        s = float(sigma[0])
        return exact_x0(x.double(), s, mu.double()).float()

    def noise_sampler(sigma, sigma_next):
        return torch.cat([torch.randn((1,) + SHAPE, generator=g) for g in gens])

    if sampler == "euler_ancestral":
        out = ks.sample_euler_ancestral(model, x, sigmas, disable=True, noise_sampler=noise_sampler)
    else:
        out = ks.sample_euler(model, x, sigmas, disable=True)
    return dict(
        name=name,
        sampler=sampler,
        steps=steps,
        seeds=seeds,
        sigmas=sigmas.tolist(),
        final_latents=out.flatten().tolist(),
        next_draw=[torch.randn(4, generator=g).tolist() for g in gens],
    )


def main():
    leading = dict(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    runs = [
        diffusers_run("euler_leading", EulerDiscreteScheduler, leading, 20, [42]),
        diffusers_run("euler_linspace", EulerDiscreteScheduler, dict(timestep_spacing="linspace"), 20, [42]),
        diffusers_run("euler_trailing_v", EulerDiscreteScheduler,
                      dict(timestep_spacing="trailing", prediction_type="v_prediction"), 12, [7]),
        diffusers_run("euler_karras", EulerDiscreteScheduler, {**leading, "use_karras_sigmas": True}, 15, [3]),
        diffusers_run("euler_a_leading_batch2", EulerAncestralDiscreteScheduler, leading, 20, [42, 43]),
        diffusers_run("euler_a_linspace_v", EulerAncestralDiscreteScheduler,
                      dict(timestep_spacing="linspace", prediction_type="v_prediction"), 10, [5]),
        diffusers_run("ddim_leading", DDIMScheduler, leading, 20, [42]),
        diffusers_run("ddim_leading_v", DDIMScheduler, {**leading, "prediction_type": "v_prediction"}, 20, [42]),
        diffusers_run("ddim_alpha_one", DDIMScheduler, {**leading, "set_alpha_to_one": True}, 20, [42]),
        diffusers_run("ddim_linspace", DDIMScheduler, dict(timestep_spacing="linspace", clip_sample=False), 20, [42]),
        diffusers_run("ddim_eta1_batch2", DDIMScheduler, leading, 20, [42, 43], eta=1.0),
        diffusers_run("img2img_euler", EulerDiscreteScheduler, leading, 20, [42], strength=0.6),
        diffusers_run("img2img_euler_a", EulerAncestralDiscreteScheduler, leading, 20, [42], strength=0.6),
        diffusers_run("img2img_ddim", DDIMScheduler, leading, 20, [42], strength=0.6),
        kdiff_run("kdiff_euler_normal", "euler", 20, [42]),
        kdiff_run("kdiff_euler_a_normal_batch2", "euler_ancestral", 20, [42, 43]),
    ]
    doc = dict(
        about=__doc__.strip().splitlines()[0],
        data_std=S,
        image_shape=list(SHAPE),
        mu="0.3 * sin(c + 2h + 3w)",
        versions=dict(torch=torch.__version__, diffusers=__import__("diffusers").__version__),
        runs=runs,
    )
    (HERE / "analytic_runs.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
