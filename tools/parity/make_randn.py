"""Reference draws of torch's CPU normal generator -> tests/fixtures/randn.{safetensors,json}.

Each entry is `torch.manual_seed(seed); torch.randn(shape)` on CPU (float32 unless said), i.e.
what diffusers draws with `torch.Generator("cpu").manual_seed(seed)` and ComfyUI with its
seed. torch uses one algorithm for tensors with fewer than 16 elements and another (a
vectorised Box-Muller over blocks of 16) from 16 elements on; the shapes cover both sides.
`sequence.*` entries are successive draws from one seeded generator (the stream continues).

Usage: tools/parity/.venv/bin/python tools/parity/make_randn.py
"""

import json

import torch
from safetensors.torch import save_file

from parity_common import FIXTURES

SEEDS = [0, 1, 42, 1234, 4294967295, 2**32 + 5]
SHAPES = [[1], [3], [7], [15], [16], [17], [31], [33], [4, 8, 8], [1, 4, 64, 64], [2, 4, 5, 7]]
SEQUENCES = [
    (42, [[5], [4, 8, 8]]),
    (42, [[17], [3], [16]]),
    (1234, [[1, 4, 8, 8], [1, 4, 8, 8]]),
]
FLOAT64 = [(42, [4, 8, 8]), (42, [7])]


def shape_name(shape):
    return "x".join(str(d) for d in shape)


def main():
    tensors, entries = {}, []

    def add(name, t, **meta):
        tensors[name] = t.contiguous()
        entries.append(dict(name=name, shape=list(t.shape), dtype=str(t.dtype).replace("torch.", ""), **meta))

    for seed in SEEDS:
        for shape in SHAPES:
            torch.manual_seed(seed)
            t = torch.randn(shape)
            # A dedicated CPU generator gives the same numbers (what diffusers uses).
            g = torch.Generator("cpu").manual_seed(seed)
            assert torch.equal(t, torch.randn(shape, generator=g))
            add(f"seed{seed}.{shape_name(shape)}", t, seed=seed, draws=[shape], call="torch.randn(shape)")
    for seed, shapes in SEQUENCES:
        g = torch.Generator("cpu").manual_seed(seed)
        base = f"sequence.seed{seed}." + "_then_".join(shape_name(s) for s in shapes)
        for i, shape in enumerate(shapes):
            add(
                f"{base}.{i}",
                torch.randn(shape, generator=g),
                seed=seed,
                draws=shapes,
                index=i,
                call=f"draw {i} of successive torch.randn calls on one generator",
            )
    for seed, shape in FLOAT64:
        torch.manual_seed(seed)
        add(
            f"seed{seed}.{shape_name(shape)}.f64",
            torch.randn(shape, dtype=torch.float64),
            seed=seed,
            draws=[shape],
            call="torch.randn(shape, dtype=torch.float64)",
        )
    save_file(tensors, str(FIXTURES / "randn.safetensors"))
    doc = dict(
        torch=torch.__version__,
        device="cpu",
        entries=entries,
    )
    # Record what torch does with a seed of 2**32 + 5 instead of guessing.
    torch.manual_seed(2**32 + 5)
    a = torch.randn(16)
    torch.manual_seed(5)
    b = torch.randn(16)
    doc["seed_2pow32_plus_5_equals_seed_5"] = bool(torch.equal(a, b))
    doc["note"] = (
        "torch.manual_seed(seed); torch.randn(shape) on CPU. torch accepts seeds up to 2**64-1; "
        "seed_2pow32_plus_5_equals_seed_5 tells whether only the low 32 bits matter."
    )
    with open(FIXTURES / "randn.json", "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"{len(entries)} entries; seed 2**32+5 == seed 5: {doc['seed_2pow32_plus_5_equals_seed_5']}")


if __name__ == "__main__":
    main()
