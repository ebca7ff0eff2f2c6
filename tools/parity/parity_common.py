"""Shared helpers of the parity scripts: paths, deterministic settings, k-diffusion import."""

import importlib
import importlib.util
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def deterministic_torch():
    """Single-threaded, deterministic CPU float32 torch."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)
    return torch


def import_k_diffusion_sampling():
    """Imports k_diffusion.sampling (and .external) without running k_diffusion/__init__.py.

    The package __init__ imports clip, clean-fid, dctorch, kornia and wandb, none of which the
    schedules need; k-diffusion is installed with --no-deps. Returns (sampling, external) or
    (None, None) when k-diffusion is not installed.
    """
    if "k_diffusion" not in sys.modules:
        spec = importlib.util.find_spec("k_diffusion")
        if spec is None or not spec.submodule_search_locations:
            return None, None
        pkg = types.ModuleType("k_diffusion")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = pkg
    sampling = importlib.import_module("k_diffusion.sampling")
    external = importlib.import_module("k_diffusion.external")
    return sampling, external
