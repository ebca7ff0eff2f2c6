"""Loads A1111's modules/prompt_parser.py (AGPL: kept outside this repository) for the prompt
fixture and fuzz scripts.

Put a copy of AUTOMATIC1111/stable-diffusion-webui's modules/prompt_parser.py in
$A1111_DIR/modules/ (default /work/refs/a1111). It imports only `lark` (A1111 pins
lark==1.1.2, as requirements.txt here) and, when imported as a module, `torch` at the end for
the conditioning helpers we do not use; a stub `torch` module is put in place if torch is
missing.
"""
import importlib.util
import os
import sys
import types


def load_prompt_parser():
    root = os.environ.get("A1111_DIR", "/work/refs/a1111")
    path = os.path.join(root, "modules", "prompt_parser.py")
    if not os.path.exists(path):
        sys.exit(f"A1111's prompt_parser.py not found at {path} (set A1111_DIR)")
    if "torch" not in sys.modules:
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.modules["torch"] = types.ModuleType("torch")
    spec = importlib.util.spec_from_file_location("a1111_prompt_parser", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_one(pp, prompt, steps, hires_steps=None, old=False):
    """A1111's view of one prompt: schedule, attention pieces (or the error it raises), AND
    parts."""
    out = {}
    sched = pp.get_learned_conditioning_prompt_schedules([prompt], steps, hires_steps, old)[0]
    out["schedule"] = [list(x) for x in sched]
    try:
        out["attention"] = [list(x) for x in pp.parse_prompt_attention(prompt)]
    except Exception as e:  # A1111 raises where float() refuses a weight
        out["attention"] = {"error": f"{type(e).__name__}: {e}"}
    res_indexes, flat, _ = pp.get_multicond_prompt_list([prompt])
    out["and"] = [[flat[i], w] for i, w in res_indexes[0]]
    return out


HASH_SEEDS = ["0", "1", "2", "3", "4", "5"]


def reference(cases, hash_seeds=HASH_SEEDS):
    """Runs A1111's parser on `cases` (dicts with prompt, steps, hires_steps, old) once per
    Python hash seed: Lark's Earley parser resolves some ambiguous prompts differently under
    different seeds (set iteration order), so A1111 itself is not deterministic there. Returns,
    per case, the list of distinct results (one when A1111 is deterministic on it)."""
    import json
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cases, f)
        path = f.name
    runs = []
    for seed in hash_seeds:
        env = dict(os.environ, PYTHONHASHSEED=seed)
        res = subprocess.run([sys.executable, __file__, path], env=env, capture_output=True,
                             text=True, check=True)
        runs.append(json.loads(res.stdout))
    os.unlink(path)
    out = []
    for i in range(len(cases)):
        distinct = []
        for r in runs:
            if r[i] not in distinct:
                distinct.append(r[i])
        out.append(distinct)
    return out


if __name__ == "__main__":
    import json

    with open(sys.argv[1]) as f:
        cases = json.load(f)
    pp = load_prompt_parser()
    print(json.dumps([reference_one(pp, c["prompt"], c["steps"], c.get("hires_steps"), c.get("old", False))
                      for c in cases]))
