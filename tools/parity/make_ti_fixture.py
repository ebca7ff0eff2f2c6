"""A tiny textual-inversion embedding for tests/fixtures/sd1-tiny (A1111 layout: `emb_params`,
2 vectors of width 8) and what diffusers makes of a prompt using it
(`load_textual_inversion(path, token="kksemb")`, which adds the tokens `kksemb`, `kksemb_1` and
expands the prompt): the text encoder's `last_hidden_state` for the 77-token padded prompt.

Writes tests/fixtures/ti-sd1-tiny/kksemb.safetensors (an embeddings folder) and
tests/fixtures/ti-sd1-tiny-ref.safetensors (`<prompt index>` -> [1, 77, 8]) + .json (prompts).
Run with tools/parity/.venv/bin/python. float32, CPU.
"""

import json
import os

import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures")
PROMPTS = ["a kksemb cat", "kksemb", "red, kksemb, blue sky kksemb"]


def main():
    gen = torch.Generator().manual_seed(4321)
    folder = os.path.join(FIX, "ti-sd1-tiny")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "kksemb.safetensors")
    save_file({"emb_params": torch.randn((2, 8), generator=gen)}, path)
    pipe = StableDiffusionPipeline.from_pretrained(
        os.path.join(FIX, "sd1-tiny"),
        torch_dtype=torch.float32,
        safety_checker=None,
        requires_safety_checker=False,
    )
    pipe.load_textual_inversion(path, token="kksemb")
    out = {}
    expanded = []
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            text = pipe.maybe_convert_prompt(prompt, pipe.tokenizer)
            expanded.append(text)
            ids = pipe.tokenizer(
                text, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
            ).input_ids
            out[str(i)] = pipe.text_encoder(ids).last_hidden_state.contiguous()
    save_file(out, os.path.join(FIX, "ti-sd1-tiny-ref.safetensors"))
    meta = {
        "prompts": PROMPTS,
        "expanded": expanded,
        "made_by": "tools/parity/make_ti_fixture.py",
        "diffusers": __import__("diffusers").__version__,
    }
    with open(os.path.join(FIX, "ti-sd1-tiny-ref.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
