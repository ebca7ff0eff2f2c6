"""Golden runs of every k-diffusion sampler (and A1111's Restart, ComfyUI's LCM and DDPM,
restated here) on an analytic Gaussian-mixture denoiser, with fixed per-image noise.

The data: every latent element is an independent two-component Gaussian mixture,
weights 0.4 / 0.6, means mu - 0.5 / mu + 0.5 (mu[c, h, w] = 0.3 sin(c + 2h + 3w)), standard
deviation 0.3 each. Its exact denoiser E[x0 | x0 + sigma eps = x] is a closed form
(responsibilities times the per-component Gaussian posterior means), computed in float64
and returned as float32, as a network would. It is nonlinear in x, so multistep and
second-order formulas are exercised, yet smooth, so the runs are well-conditioned (checked:
a 1e-6 relative change of the initial noise moves every final result by far less than the
tests' tolerance, see `check_conditioning`).

Noise: the initial noise and the ancestral / churn / restart draws come from one CPU
torch.Generator per image (A1111's per-image seeds, ComfyUI on CPU); the SDE samplers use
k-diffusion's BrownianTreeNoiseSampler with the list of per-image seeds (what A1111's
create_noise_sampler does).

Writes crates/kakusan-sampling/tests/golden/k_sampler_runs.json. Run with the parity venv:
    tools/parity/.venv/bin/python tools/parity/make_sampler_runs.py
"""

import json
import math

import numpy as np

from parity_common import ROOT, deterministic_torch, import_k_diffusion_sampling

torch = deterministic_torch()
ks, external = import_k_diffusion_sampling()

OUT = ROOT / "crates" / "kakusan-sampling" / "tests" / "golden" / "k_sampler_runs.json"
SHAPE = (4, 4, 4)
WEIGHTS = (0.4, 0.6)
OFFSETS = (-0.5, 0.5)
STD = 0.3


def mu_like(batch):
    c, h, w = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    mu = 0.3 * np.sin(c + 2 * h + 3 * w)
    return torch.tensor(np.broadcast_to(mu, (batch,) + SHAPE).copy(), dtype=torch.float64)


def mixture_x0(x, sigma, mu):
    """E[x0 | x] for the per-element mixture, float64."""
    var = STD * STD + sigma * sigma
    logs, means = [], []
    for w, off in zip(WEIGHTS, OFFSETS):
        m = mu + off
        logs.append(math.log(w) - 0.5 * (x - m) ** 2 / var)
        means.append((STD * STD * x + sigma * sigma * m) / var)
    stacked = torch.stack(logs)
    resp = torch.softmax(stacked, dim=0)
    return sum(r * m for r, m in zip(resp, means))


def ldm_sigmas_table():
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.tensor(np.cumprod(1 - betas.numpy()), dtype=torch.float32)

    class Inner:
        alphas_cumprod = ac

        def apply_model(self, *args, **kwargs):
            raise NotImplementedError

    return external.CompVisDenoiser(Inner())


DEN = ldm_sigmas_table()


def schedule(kind, steps):
    if kind == "normal":
        return DEN.get_sigmas(steps)
    if kind == "karras":
        return ks.get_sigmas_karras(steps, DEN.sigma_min.item(), DEN.sigma_max.item())
    if kind == "exponential":
        return ks.get_sigmas_exponential(steps, DEN.sigma_min.item(), DEN.sigma_max.item())
    raise ValueError(kind)


class Streams:
    """One CPU generator per image; randn_like draws image i from generator i."""

    def __init__(self, seeds):
        self.gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]

    def randn(self):
        return torch.cat([torch.randn((1,) + SHAPE, generator=g) for g in self.gens])

    def randn_like(self, x):
        return self.randn()

    def sampler(self):
        return lambda sigma, sigma_next: self.randn()

    def next_draw(self):
        return [torch.randn(4, generator=g).tolist() for g in self.gens]


class TorchHijack:
    """What A1111 puts in place of k_diffusion.sampling.torch: randn_like from the images'
    generators, everything else from torch."""

    def __init__(self, streams):
        self.streams = streams

    def __getattr__(self, item):
        if item == "randn_like":
            return self.streams.randn_like
        return getattr(torch, item)


# --- restatements of samplers that k-diffusion 0.1.1 does not ship -------------------

def restart_sampler(model, x, sigmas, randn_like, s_noise=1.0):
    """A1111's Restart (modules/sd_samplers_extra.py), restated: Heun steps; for >= 20
    steps the schedule becomes Karras over n - restart_steps * times levels and the sample
    jumps from the level nearest 0.1 back to the one nearest 2."""
    s_in = x.new_ones([x.shape[0]])

    def heun(x, old, new):
        denoised = model(x, old * s_in)
        d = ks.to_d(x, old, denoised)
        dt = new - old
        if new == 0:
            return x + d * dt
        x_2 = x + d * dt
        d_2 = ks.to_d(x_2, new, model(x_2, new * s_in))
        return x + (d + d_2) / 2 * dt

    steps = sigmas.shape[0] - 1
    plan = {}
    if steps >= 20:
        r_steps, r_times = (9, 1) if steps < 36 else (steps // 4, 2)
        sigmas = ks.get_sigmas_karras(steps - r_steps * r_times, sigmas[-2].item(), sigmas[0].item())
        plan = {int(torch.argmin(abs(sigmas - 0.1), dim=0)): (r_steps + 1, r_times, 2)}
    pairs = []
    for i in range(len(sigmas) - 1):
        pairs.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in plan:
            r_steps, r_times, r_max = plan[i + 1]
            lo, hi = i + 1, int(torch.argmin(abs(sigmas - r_max), dim=0))
            if hi < lo:
                levels = ks.get_sigmas_karras(r_steps, sigmas[lo].item(), sigmas[hi].item())[:-1]
                for _ in range(r_times):
                    pairs.extend(zip(levels[:-1], levels[1:]))
    last = None
    for old, new in pairs:
        if last is None:
            last = old
        elif last < old:
            x = x + randn_like(x) * s_noise * (old**2 - last**2) ** 0.5
        x = heun(x, old, new)
        last = new
    return x, len(pairs)


def lcm_sampler(model, x, sigmas, noise_sampler):
    """ComfyUI / A1111 sample_lcm, restated: x = denoised, re-noised to the next level."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i] * s_in)
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


def ddpm_sampler(model, x, sigmas, noise_sampler):
    """ComfyUI sample_ddpm, restated: DDPM posterior steps in the unscaled space."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        denoised = model(x, sigma * s_in)
        eps = (x - denoised) / sigma
        xu = x / torch.sqrt(1.0 + sigma**2.0)
        ac = 1 / (sigma * sigma + 1)
        ac_prev = 1 / (sigma_prev * sigma_prev + 1)
        alpha = ac / ac_prev
        mu = (1.0 / alpha).sqrt() * (xu - (1 - alpha) * eps / (1 - ac).sqrt())
        if sigma_prev > 0:
            mu = mu + ((1 - alpha) * (1.0 - ac_prev) / (1.0 - ac)).sqrt() * noise_sampler(sigma, sigma_prev)
            x = mu * torch.sqrt(1.0 + sigma_prev**2.0)
        else:
            x = mu
    return x


def plms_run(name, steps, seeds):
    """LDM's / A1111's PLMS (A1111 1.6+ sd_samplers_timesteps_impl.plms), restated, in
    the unscaled DDPM space over A1111's timesteps (1, 1 + 1000 // steps, ...), ending at
    t = 1; the model is the mixture's exact eps."""
    ac = DEN.inner_model.alphas_cumprod
    table = ((1 - ac) / ac) ** 0.5
    timesteps = torch.clip(torch.arange(0, 1000, 1000 // steps) + 1, 0, 999)
    alphas = ac[timesteps]
    alphas_prev = ac[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    batch = len(seeds)
    mu = mu_like(batch)
    streams = Streams(seeds)
    x = streams.randn()
    s_x = x.new_ones((batch, 1, 1, 1))
    calls = 0

    def model(x, t):
        nonlocal calls
        calls += 1
        sigma = float(table[int(t)])
        xk = x.double() * (1 + sigma * sigma) ** 0.5
        return ((xk - mixture_x0(xk, sigma, mu)) / sigma).float()

    def step(x, e_t, index):
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sq = sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sq * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t

    old_eps = []
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        t, t_next = timesteps[index], timesteps[max(index - 1, 0)]
        e_t = model(x, t)
        if not old_eps:
            x_prev = step(x, e_t, index)
            e_prime = (e_t + model(x_prev, t_next)) / 2
        elif len(old_eps) == 1:
            e_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x = step(x, e_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
    return dict(name=name, steps=steps, seeds=list(seeds), timesteps=timesteps.tolist(),
                model_calls=calls, final_unscaled=x.flatten().tolist())


def unipc_run(name, steps, seeds, **config):
    """diffusers' UniPCMultistepScheduler (data prediction, with corrector) on the mixture's
    exact eps, in its own unscaled space (init_noise_sigma 1, no input scaling)."""
    from diffusers import UniPCMultistepScheduler

    sched = UniPCMultistepScheduler.from_config(dict(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        **config))
    sched.set_timesteps(steps)
    ac = sched.alphas_cumprod.numpy().astype(np.float64)
    table = ((1 - ac) / ac) ** 0.5
    batch = len(seeds)
    mu = mu_like(batch)
    streams = Streams(seeds)
    latents = streams.randn() * sched.init_noise_sigma
    calls = 0
    for t in sched.timesteps:
        calls += 1
        sigma = float(np.interp(float(t), np.arange(len(table)), table))
        xk = latents.double() * (1 + sigma * sigma) ** 0.5
        eps = ((xk - mixture_x0(xk, sigma, mu)) / sigma).float()
        latents = sched.step(eps, t, latents).prev_sample
    assert torch.isfinite(latents).all(), name
    return dict(name=name, steps=steps, seeds=list(seeds), config=config,
                sigmas=sched.sigmas.tolist(), model_calls=calls, final=latents.flatten().tolist())


def diffusers_family_run(name, cls_name, steps, seeds, **config):
    """diffusers' k-diffusion-style schedulers (Heun, LMS, DPMSolverMultistep) with the folder-config
    conventions (timestep spacing, init_noise_sigma, input scaling), on the mixture's exact
    eps; sigma is recovered from the timestep fed (np.interp over the scheduler's table)."""
    import diffusers

    cls = getattr(diffusers, cls_name)
    sched = cls.from_config(dict(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        **config))
    sched.set_timesteps(steps)
    ac = sched.alphas_cumprod.numpy().astype(np.float64)
    table = ((1 - ac) / ac) ** 0.5
    batch = len(seeds)
    mu = mu_like(batch)
    streams = Streams(seeds)
    latents = streams.randn() * sched.init_noise_sigma
    calls = 0
    for t in sched.timesteps:
        calls += 1
        x_in = sched.scale_model_input(latents, t)
        sigma = float(np.interp(float(t), np.arange(len(table)), table))
        xk = x_in.double() * (sigma * sigma + 1) ** 0.5
        eps = ((xk - mixture_x0(xk, sigma, mu)) / sigma).float()
        latents = sched.step(eps, t, latents).prev_sample
    return dict(name=name, scheduler=cls_name, steps=steps, seeds=list(seeds),
                # (JSON has no infinities: lambda_min_clipped = -inf, the default, goes as null.)
                config={k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                        for k, v in sched.config.items()},
                init_noise_sigma=float(sched.init_noise_sigma),
                model_calls=calls, final=latents.flatten().tolist())


# --- runs ----------------------------------------------------------------------------

def run(name, sampler, kind, steps, seeds, options=None, eps_scale=1.0):
    """One run; returns (record, final tensor). `eps_scale` perturbs the initial noise.

    With `strength` in the options, an img2img run as A1111 does it: t_enc =
    int(min(strength, 0.999) * steps), the sampler walks sigmas[steps - t_enc - 1:] from
    init + noise * sigma_sched[0] (init = mu + 0.2), the Brownian tree spans the whole
    schedule, DPM fast/adaptive get sigma_sched's range and length.
    """
    options = dict(options or {})
    batch = len(seeds)
    mu = mu_like(batch)
    if options.pop("discard_penultimate", False):
        # A1111's get_sigmas for DPM2: one step more, then the next-to-last sigma dropped.
        sigmas = schedule(kind, steps + 1)
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    else:
        sigmas = schedule(kind, steps)
    strength = options.pop("strength", None)
    full = sigmas
    streams = Streams(seeds)
    if strength is None:
        x = streams.randn() * eps_scale * sigmas[0]
    else:
        t_enc = int(min(strength, 0.999) * steps)
        sigmas = full[steps - t_enc - 1:]
        x = (mu + 0.2).float() + streams.randn() * eps_scale * sigmas[0]
    calls = 0

    def model(x, sigma):
        nonlocal calls
        calls += 1
        return mixture_x0(x.double(), float(sigma[0]), mu).float()

    # A1111 replaces k_diffusion.sampling.torch so that randn_like draws from the images'
    # streams. Euler / Heun / DPM2 call randn_like on every step but use it only for churn;
    # without churn the draw is invisible, and we leave the streams alone (kakusan draws
    # nothing then), so the hijack is only installed when churn is on.
    churn_samplers = ("euler", "heun", "dpm_2")
    if sampler not in churn_samplers or options.get("s_churn", 0) > 0:
        ks.torch = TorchHijack(streams)
    extra = {}
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    if sampler in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"):
        tree_min, tree_max = full[full > 0].min(), full.max()
        extra["noise_sampler"] = ks.BrownianTreeNoiseSampler(x, tree_min, tree_max, seed=list(seeds))
    elif sampler in ("euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpm_fast", "dpm_adaptive"):
        extra["noise_sampler"] = streams.sampler()
    if sampler == "restart":
        out, _ = restart_sampler(model, x, sigmas, streams.randn_like, **options)
    elif sampler == "lcm":
        out = lcm_sampler(model, x, sigmas, streams.sampler())
    elif sampler == "ddpm":
        out = ddpm_sampler(model, x, sigmas, streams.sampler())
    elif sampler == "dpm_fast":
        out = ks.sample_dpm_fast(model, x, sigma_min.item(), sigma_max.item(), len(sigmas) - 1,
                                 disable=True, **extra, **options)
    elif sampler == "dpm_adaptive":
        out = ks.sample_dpm_adaptive(model, x, sigma_min.item(), sigma_max.item(), disable=True,
                                     **extra, **options)
    else:
        fn = getattr(ks, "sample_" + sampler)
        out = fn(model, x, sigmas, disable=True, **extra, **options)
    ks.torch = torch
    record = dict(
        name=name,
        sampler=sampler,
        schedule=kind,
        steps=steps,
        seeds=list(seeds),
        options=options,
        strength=strength,
        full_sigmas=full.tolist(),
        sigmas=sigmas.tolist(),
        model_calls=calls,
        final=out.flatten().tolist(),
        next_draw=streams.next_draw(),
    )
    return record, out


RUNS = [
    # (name, sampler, schedule, steps, seeds, options)
    ("euler_churn", "euler", "normal", 12, [11], dict(s_churn=1.0)),
    ("euler_a_eta_half", "euler_ancestral", "karras", 12, [12, 13], dict(eta=0.5, s_noise=0.9)),
    ("heun", "heun", "normal", 10, [21], {}),
    ("heun_churn", "heun", "karras", 10, [22], dict(s_churn=2.0, s_tmin=0.5, s_tmax=10.0)),
    ("dpm_2", "dpm_2", "karras", 10, [31], dict(discard_penultimate=True)),
    ("dpm_2_ancestral", "dpm_2_ancestral", "normal", 12, [32, 33], dict(discard_penultimate=True)),
    ("dpmpp_2s_ancestral", "dpmpp_2s_ancestral", "karras", 12, [41], {}),
    ("dpmpp_2m_normal", "dpmpp_2m", "normal", 15, [51], {}),
    ("dpmpp_2m_karras", "dpmpp_2m", "karras", 15, [52], {}),
    ("dpmpp_sde_karras_batch2", "dpmpp_sde", "karras", 10, [61, 62], {}),
    ("dpmpp_sde_eta_half", "dpmpp_sde", "exponential", 8, [63], dict(eta=0.5, s_noise=0.8)),
    ("dpmpp_2m_sde_midpoint", "dpmpp_2m_sde", "karras", 15, [71, 72], {}),
    ("dpmpp_2m_sde_heun", "dpmpp_2m_sde", "exponential", 15, [73], dict(solver_type="heun")),
    ("dpmpp_3m_sde", "dpmpp_3m_sde", "exponential", 15, [81, 82], {}),
    ("dpmpp_3m_sde_eta_0", "dpmpp_3m_sde", "karras", 15, [83], dict(eta=0.0)),
    ("lms", "lms", "normal", 15, [91], {}),
    ("lms_karras", "lms", "karras", 15, [92], {}),
    ("dpm_fast", "dpm_fast", "normal", 14, [101], {}),
    ("dpm_fast_15", "dpm_fast", "normal", 15, [102], {}),
    ("dpm_adaptive", "dpm_adaptive", "normal", 20, [111], {}),
    ("restart_short", "restart", "normal", 10, [121], {}),
    ("restart_20", "restart", "normal", 20, [122], {}),
    ("restart_40", "restart", "karras", 40, [123, 124], {}),
    ("lcm", "lcm", "normal", 8, [131, 132], {}),
    ("ddpm", "ddpm", "normal", 20, [141], {}),
]

# img2img at A1111's strength arithmetic, every sampler (schedule built with the sampler's
# own habits: DPM2's dropped sigma before the cut).
IMG2IMG = [
    ("img2img_" + sampler + suffix, sampler, kind, steps, [200 + i], dict(options, strength=strength))
    for i, (sampler, suffix, kind, steps, strength, options) in enumerate([
        ("euler", "", "normal", 20, 0.6, {}),
        ("euler_ancestral", "", "normal", 20, 0.6, {}),
        ("heun", "", "karras", 12, 0.5, {}),
        ("dpm_2", "", "karras", 12, 0.5, dict(discard_penultimate=True)),
        ("dpm_2_ancestral", "", "normal", 12, 0.7, dict(discard_penultimate=True)),
        ("dpmpp_2s_ancestral", "", "normal", 12, 0.6, {}),
        ("dpmpp_2m", "", "karras", 20, 0.45, {}),
        ("dpmpp_sde", "", "karras", 12, 0.6, {}),
        ("dpmpp_2m_sde", "", "karras", 20, 0.6, {}),
        ("dpmpp_2m_sde", "_heun", "karras", 15, 0.5, dict(solver_type="heun")),
        ("dpmpp_3m_sde", "", "normal", 20, 0.75, {}),
        ("lms", "", "normal", 20, 0.6, {}),
        ("dpm_fast", "", "normal", 20, 0.6, {}),
        ("dpm_adaptive", "", "normal", 20, 0.6, {}),
        ("restart", "", "normal", 20, 0.6, {}),
        ("restart", "_40", "karras", 40, 0.75, {}),
        ("lcm", "", "normal", 8, 0.5, {}),
        ("ddpm", "", "normal", 20, 0.6, {}),
    ])
]


def rel_max_diff(a, b):
    scale = max(1.0, float(b.abs().max()))
    return float((a - b).abs().max()) / scale


# The Rust tests' tolerance per run (tests/k_sampler_runs.rs states why); a 1e-6 relative
# change of the initial noise must move the result by less than a tenth of it.
LOOSER = {"dpm_adaptive": 5e-5, "img2img_dpm_adaptive": 5e-5}


def check_conditioning(spec, out):
    # Measured with a 1e-4 change and scaled to 1e-6: a direct 1e-6 change is drowned in
    # the float32 rounding of the two runs (~1e-6 by itself).
    _, perturbed = run(*spec, eps_scale=1 + 1e-4)
    moved = rel_max_diff(perturbed, out) / 100
    limit = LOOSER.get(spec[0], 1e-5) / 10
    assert moved < limit, f"{spec[0]}: a 1e-6 noise change moved the result by {moved:.1e}"
    return moved


def brownian_probe():
    """Raw BrownianTreeNoiseSampler output for a batch of two seeds (exact in float32)."""
    x = torch.zeros((2,) + SHAPE)
    sigmas = schedule("karras", 6)
    ns = ks.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=[5, 6])
    pairs = [(a, b) for a, b in zip(sigmas[:-2], sigmas[1:-1])]
    # A query across several tree intervals, then one inside an earlier one.
    pairs += [(sigmas[0], sigmas[3]), (sigmas[2], sigmas[4])]
    draws, raw = [], []
    for a, b in pairs:
        draws.append(ns(a, b).flatten().tolist())
        # The Brownian increment itself, W(a) - W(b) per image, before normalisation.
        raw.append(torch.stack([t(float(b), float(a)) for t in ns.tree.trees]).flatten().tolist())
    return dict(seeds=[5, 6], sigma_min=sigmas[sigmas > 0].min().item(), sigma_max=sigmas.max().item(),
                pairs=[[a.item(), b.item()] for a, b in pairs], noise=draws, increments=raw)


def main():
    runs = []
    for spec in RUNS + IMG2IMG:
        record, out = run(*spec)
        record["conditioning"] = check_conditioning(spec, out)
        runs.append(record)
        print(f"{record['name']}: {record['model_calls']} calls, conditioning {record['conditioning']:.1e}")
    doc = dict(
        about=__doc__.strip().splitlines()[0],
        mixture=dict(weights=WEIGHTS, offsets=OFFSETS, std=STD, mu="0.3 * sin(c + 2h + 3w)"),
        image_shape=list(SHAPE),
        versions=dict(torch=torch.__version__, k_diffusion="0.1.1.post1", numpy=np.__version__),
        brownian=brownian_probe(),
        plms=[plms_run("plms_20", 20, [151]), plms_run("plms_12_batch2", 12, [152, 153])],
        unipc=[
            unipc_run("unipc_bh2_order2", 15, [161]),
            # diffusers' bh1 multiplies B(h) = -inf by 0 on a last step to sigma 0 (NaN): end
            # at sigma_min instead.
            unipc_run("unipc_bh1_order3", 12, [162, 163], solver_type="bh1", solver_order=3,
                      final_sigmas_type="sigma_min"),
            unipc_run("unipc_bh2_order3", 20, [164], solver_order=3),
        ],
        diffusers=[
            diffusers_family_run("heun_leading", "HeunDiscreteScheduler", 10, [171],
                                 timestep_spacing="leading", steps_offset=1),
            diffusers_family_run("heun_linspace", "HeunDiscreteScheduler", 8, [172, 173]),
            diffusers_family_run("lms_leading", "LMSDiscreteScheduler", 15, [174],
                                 timestep_spacing="leading", steps_offset=1),
            diffusers_family_run("lms_linspace", "LMSDiscreteScheduler", 12, [175]),
            diffusers_family_run("dpmpp_2m_linspace", "DPMSolverMultistepScheduler", 20, [176]),
            diffusers_family_run("dpmpp_2m_leading", "DPMSolverMultistepScheduler", 15, [177, 178],
                                 timestep_spacing="leading", steps_offset=1),
            diffusers_family_run("dpmpp_2m_trailing_8", "DPMSolverMultistepScheduler", 8, [179],
                                 timestep_spacing="trailing"),
            diffusers_family_run("dpmpp_2m_sigma_min", "DPMSolverMultistepScheduler", 16, [180],
                                 final_sigmas_type="sigma_min"),
        ],
        runs=runs,
    )
    OUT.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
