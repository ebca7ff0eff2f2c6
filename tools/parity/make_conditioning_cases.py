"""Writes tests/fixtures/prompt-cond-sd1-tiny.{json,safetensors}: A1111's weighted text
conditioning on the tiny SD1 fixture's text encoder.

    python tools/parity/make_conditioning_cases.py

A re-statement (written here) of what A1111 does from a prompt to the cross-attention
context, on A1111's own prompt_parser (schedules, AND parts, attention pieces; see
a1111_prompt.py), with transformers' CLIPTextModel / CLIPTokenizer from tests/fixtures/sd1-tiny:
for each AND part, its schedule's texts are chunked (make_chunk_cases.chunk_line), padded with
empty chunks to one chunk count, and encoded chunk by chunk as one batch; each chunk's hidden
states (last layer, final layer norm: clip skip 1) are multiplied by the token weights; chunks are concatenated along the
sequence axis; AND parts of different lengths are padded by repeating their last vector.

The emphasis recorded is "No norm" (weights multiply the hidden states, no mean restoring):
the tiny encoder's final layer norm has unit gain and zero bias, so with hidden size 8 every
row has mean ~0 and the "Original" rescaling factor mean_before / mean_after is a ratio of two
rounding errors (~1e-8), not comparable between implementations. The mean restoring itself is
checked on random data in crates/kakusan-prompt/tests/a1111_chunks.rs.
Records, per case and AND part, the weight, the schedule's end steps and the [1, L, 8] tensor
of each entry.
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer

from a1111_prompt import load_prompt_parser
from make_chunk_cases import chunk_line

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "tests", "fixtures")

CASES = [
    ("a red circle on a blue background", 10),
    ("a (red:1.5) circle, [blue] background", 10),
    ("((a red circle)), (blue:0.7) background, [[[small]]]", 10),
    ("a red circle BREAK a blue background", 10),
    (", ".join(["(red circle:1.2)", "blue", "[small]", "square"] * 12), 10),
    ("a [red:blue:4] circle, (round:1.3)", 8),
    ("a [red|(blue:1.4)] circle", 4),
    ("a (red:1.3) circle AND a blue square :0.6", 10),
    ("a circle AND " + ", ".join(["(red:1.1) blue"] * 30) + " :1.5", 10),
]


def main():
    pp = load_prompt_parser()
    tok = CLIPTokenizer.from_pretrained(os.path.join(FIXTURES, "sd1-tiny", "tokenizer"))
    model = CLIPTextModel.from_pretrained(os.path.join(FIXTURES, "sd1-tiny", "text_encoder"),
                                          torch_dtype=torch.float32).eval()
    bos, eos = tok.bos_token_id, tok.eos_token_id
    comma = tok.get_vocab().get(",</w>")

    def tokenize(text):
        return tok([text], truncation=False, add_special_tokens=False)["input_ids"][0]

    def empty_chunk():
        return {"tokens": [bos] + [eos] * 76, "weights": [1.0] * 77}

    @torch.no_grad()
    def encode_texts(texts):
        """One tensor [1, L, D] per text, A1111's batch over all of them."""
        chunked = [chunk_line(pp.parse_prompt_attention(t), tokenize, bos, eos, comma)[0] for t in texts]
        n = max(len(c) for c in chunked)
        zs = []
        for i in range(n):
            batch = [c[i] if i < len(c) else empty_chunk() for c in chunked]
            ids = torch.tensor([b["tokens"] for b in batch])
            mult = torch.tensor([b["weights"] for b in batch], dtype=torch.float32)
            z = model(input_ids=ids).last_hidden_state
            z = z * mult.reshape(mult.shape + (1,)).expand(z.shape)
            zs.append(z)
        z = torch.hstack(zs)
        return [z[i:i + 1] for i in range(len(texts))]

    tensors = {}
    meta = []
    for ci, (prompt, steps) in enumerate(CASES):
        res_indexes, flat, _ = pp.get_multicond_prompt_list([prompt])
        parts = []
        for pi, (index, weight) in enumerate(res_indexes[0]):
            schedule = pp.get_learned_conditioning_prompt_schedules([flat[index]], steps)[0]
            zs = encode_texts([t for _, t in schedule])
            parts.append({"weight": weight, "schedule": schedule, "z": zs})
        # AND parts to one length: repeat the last vector (A1111's stack_conds).
        length = max(p["z"][0].shape[1] for p in parts)
        for pi, p in enumerate(parts):
            for ei, z in enumerate(p["z"]):
                if z.shape[1] < length:
                    z = torch.cat([z, z[:, -1:].repeat(1, length - z.shape[1], 1)], 1)
                tensors[f"case{ci}.part{pi}.entry{ei}"] = z.contiguous()
        meta.append({"prompt": prompt, "steps": steps,
                     "parts": [{"weight": p["weight"], "schedule": p["schedule"]} for p in parts]})
    save_file(tensors, os.path.join(FIXTURES, "prompt-cond-sd1-tiny.safetensors"))
    with open(os.path.join(FIXTURES, "prompt-cond-sd1-tiny.json"), "w", encoding="utf-8") as f:
        json.dump({"model": "tests/fixtures/sd1-tiny", "clip_skip": 1, "emphasis": "No norm",
                   "cases": meta}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(CASES)} cases, {len(tensors)} tensors")


if __name__ == "__main__":
    main()
