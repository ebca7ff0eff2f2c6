"""Reference sigma schedules for SD's scaled-linear betas (0.00085 to 0.012, 1000 steps):
ComfyUI's simple / sgm_uniform / ddim_uniform / beta schedulers and normal, restated from
their definitions over ComfyUI's table (ModelSamplingDiscrete: float64 betas and cumprod,
sigmas stored as float32), and k-diffusion's polyexponential (rho = 1, A1111's
"Polyexponential") from k_diffusion.sampling itself.

Writes crates/kakusan-sampling/tests/golden/schedules.json. Run with the parity venv:
    tools/parity/.venv/bin/python tools/parity/make_schedules.py
"""

import json

import numpy as np
import scipy.stats

from parity_common import ROOT, deterministic_torch, import_k_diffusion_sampling

torch = deterministic_torch()
ks, _ = import_k_diffusion_sampling()
OUT = ROOT / "crates" / "kakusan-sampling" / "tests" / "golden" / "schedules.json"


class ModelSampling:
    """ComfyUI's ModelSamplingDiscrete for SD's betas, restated."""

    def __init__(self):
        betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
        ac = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1 - ac) / ac) ** 0.5
        self.sigmas = sigmas.float()
        self.log_sigmas = sigmas.log().float()
        self.sigma_min, self.sigma_max = self.sigmas[0], self.sigmas[-1]

    def timestep(self, sigma):
        return (sigma.log() - self.log_sigmas).abs().argmin()

    def sigma(self, t):
        t = torch.clamp(t.float(), min=0, max=len(self.sigmas) - 1)
        lo, hi, w = t.floor().long(), t.ceil().long(), t.frac()
        return ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi]).exp()


MS = ModelSampling()


def normal(steps, sgm=False):
    start, end = MS.timestep(MS.sigma_max), MS.timestep(MS.sigma_min)
    ts = torch.linspace(start, end, steps + 1)[:-1] if sgm else torch.linspace(start, end, steps)
    return [float(MS.sigma(t)) for t in ts] + [0.0]


def simple(steps):
    ss = len(MS.sigmas) / steps
    return [float(MS.sigmas[-(1 + int(x * ss))]) for x in range(steps)] + [0.0]


def ddim_uniform(steps):
    ss = max(len(MS.sigmas) // steps, 1)
    sigs, x = [], 1
    while x < len(MS.sigmas):
        sigs.append(float(MS.sigmas[x]))
        x += ss
    return sigs[::-1] + [0.0]


def beta(steps, alpha=0.6, b=0.6):
    total = len(MS.sigmas) - 1
    ts = 1 - np.linspace(0, 1, steps, endpoint=False)
    ts = np.rint(scipy.stats.beta.ppf(ts, alpha, b) * total)
    sigs, last = [], -1
    for t in ts:
        if t != last:
            sigs.append(float(MS.sigmas[int(t)]))
        last = t
    return sigs + [0.0]


def polyexponential(steps):
    return ks.get_sigmas_polyexponential(steps, MS.sigma_min.item(), MS.sigma_max.item(), rho=1.0).tolist()


def main():
    kinds = dict(
        normal=normal,
        sgm_uniform=lambda n: normal(n, sgm=True),
        simple=simple,
        ddim_uniform=ddim_uniform,
        beta=beta,
        polyexponential=polyexponential,
    )
    cases = []
    for name, fn in kinds.items():
        for steps in (1, 7, 20, 30, 50):
            cases.append(dict(schedule=name, steps=steps, sigmas=fn(steps)))
    doc = dict(about=__doc__.strip().splitlines()[0], betas="scaled_linear 0.00085..0.012, 1000",
               versions=dict(torch=torch.__version__, scipy=scipy.__version__), cases=cases)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(cases)} schedules")


if __name__ == "__main__":
    main()
