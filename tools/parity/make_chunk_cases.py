"""Writes tests/fixtures/prompt_chunks.json: A1111's 75-token chunking on the fixture tokenizer.

    python tools/parity/make_chunk_cases.py

The chunking is a re-statement (written here, not copied) of what A1111's
`FrozenCLIPEmbedderWithCustomWords.tokenize_line` does, with its defaults (chunk length 75,
comma_padding_backtrack 20, no textual-inversion embeddings), on A1111's own
`parse_prompt_attention` (see a1111_prompt.py) and transformers' CLIPTokenizer loaded from
tests/fixtures/tokenizer (each piece tokenized on its own, no special tokens). Records, per
prompt and emphasis mode ("Original": parsed; "None": the whole text one piece), the pieces'
ids, the chunks (77 ids and 77 weights each, stored without the trailing run of (EOS, 1.0)
padding) and the token count. Also records the emphasis
arithmetic ("Original" mean restoring, "No norm") on a small random batch, in float32 torch.
"""
import json
import os
import random

import torch
from transformers import CLIPTokenizer

from a1111_prompt import load_prompt_parser

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "tests", "fixtures")
CHUNK = 75
BACKTRACK = 20


def chunk_line(pieces, tokenize, bos, eos, comma):
    """Our re-statement of A1111's tokenize_line (no embeddings)."""
    chunks = []
    cur_t, cur_w = [], []
    count = 0
    last_comma = -1

    def close(is_last):
        nonlocal cur_t, cur_w, count, last_comma
        count += len(cur_t) if is_last else CHUNK
        pad = CHUNK - len(cur_t)
        toks = [bos] + cur_t + [eos] * max(pad, 0) + [eos]
        ws = [1.0] + cur_w + [1.0] * max(pad, 0) + [1.0]
        chunks.append({"tokens": toks, "weights": ws})
        cur_t, cur_w = [], []
        last_comma = -1

    for text, weight in pieces:
        if text == "BREAK" and weight == -1:
            close(False)
            continue
        ids = tokenize(text)
        for tok in ids:
            if tok == comma:
                last_comma = len(cur_t)
            elif len(cur_t) == CHUNK and last_comma != -1 and len(cur_t) - last_comma <= BACKTRACK:
                keep = last_comma + 1
                moved_t, moved_w = cur_t[keep:], cur_w[keep:]
                cur_t, cur_w = cur_t[:keep], cur_w[:keep]
                close(False)
                cur_t, cur_w = moved_t, moved_w
            if len(cur_t) == CHUNK:
                close(False)
            cur_t.append(tok)
            cur_w.append(weight)
    if cur_t or not chunks:
        close(True)
    return chunks, count


def prompts():
    rng = random.Random(7)
    words = ["cat", "dog", "red", "blue", "masterpiece", "best quality", "highly detailed",
             "portrait", "forest", "sunset", "a girl", "long hair", "smile", "city", "night"]
    out = [
        "", "a cat", "a, b, (c:1.3), [d]", "BREAK", "a BREAK b", "(a BREAK b)", "a BREAK BREAK b",
        "a cat BREAK", "\\(escaped\\) [[down]] (((up)))", "(a:0) (b:-1) (c:2.5)",
        "supercalifragilisticexpialidocious " * 4, "🎨🌸 猫 café",
    ]
    # Long prompts without commas: hard cuts at 75.
    out.append(" ".join(rng.choice(["cat", "dog", "tree", "sky"]) for _ in range(80)))
    out.append(" ".join(["cat"] * 75))
    out.append(" ".join(["cat"] * 76))
    out.append(" ".join(["cat"] * 150))
    out.append(" ".join(["cat"] * 151))
    # A comma at every distance from the end of the first chunk.
    for back in range(0, 26):
        n_before = 74 - back
        out.append(" ".join(["cat"] * n_before) + ", " + " ".join(["dog"] * 30))
    # Comma-separated tag lists of many lengths, with weights and BREAK mixed in.
    for k in range(25):
        tags = []
        for _ in range(rng.randint(10, 60)):
            t = rng.choice(words)
            r = rng.random()
            if r < 0.15:
                t = f"({t}:{rng.choice(['0.8', '1.2', '1.35'])})"
            elif r < 0.25:
                t = f"(({t}))"
            elif r < 0.3:
                t = f"[{t}]"
            elif r < 0.33:
                t = "BREAK " + t
            tags.append(t)
        out.append(", ".join(tags))
    # Weights spanning a chunk boundary, unbalanced brackets at the end.
    out.append("(" + ", ".join(["cat dog"] * 40))
    out.append(", ".join(["cat dog"] * 30) + " [[")
    return out


def main():
    pp = load_prompt_parser()
    tok = CLIPTokenizer.from_pretrained(os.path.join(FIXTURES, "tokenizer"))
    bos, eos = tok.bos_token_id, tok.eos_token_id
    comma = tok.get_vocab().get(",</w>")
    ids_of = {}

    def tokenize(text):
        if text not in ids_of:
            ids_of[text] = tok([text], truncation=False, add_special_tokens=False)["input_ids"][0]
        return ids_of[text]

    def trimmed(chunk):
        """A chunk without its trailing (EOS, 1.0) run: the Rust test pads it back to 77."""
        t, w = list(chunk["tokens"]), list(chunk["weights"])
        assert len(t) == 77 and len(w) == 77
        while t and t[-1] == eos and w[-1] == 1.0:
            t.pop()
            w.pop()
        return {"tokens": t, "weights": w}

    cases = []
    for i, p in enumerate(prompts()):
        # "None" (no parsing) on a few prompts only: it differs from "Original" only there.
        modes = ("Original", "None") if i < 12 else ("Original",)
        for mode in modes:
            pieces = pp.parse_prompt_attention(p) if mode != "None" else [[p, 1.0]]
            for text, _ in pieces:
                tokenize(text)
            chunks, count = chunk_line(pieces, tokenize, bos, eos, comma)
            cases.append({"prompt": p, "emphasis": mode, "chunks": [trimmed(c) for c in chunks],
                          "token_count": count})

    # Emphasis arithmetic on a random batch: 2 texts x 77 tokens x 2 values.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 77, 2, generator=g, dtype=torch.float32)
    mult = torch.tensor([[1.0 + 0.1 * ((i * 7 + b) % 5) for i in range(77)] for b in range(2)],
                        dtype=torch.float32)
    original_mean = z.mean()
    weighted = z * mult.reshape(mult.shape + (1,)).expand(z.shape)
    restored = weighted * (original_mean / weighted.mean())
    emphasis = {"dim": 2, "z": z.flatten().tolist(), "weights": mult.flatten().tolist(),
                "original": restored.flatten().tolist(), "no_norm": weighted.flatten().tolist()}

    out = {"source": "re-statement of A1111 tokenize_line; A1111 parse_prompt_attention; "
                     "transformers CLIPTokenizer on tests/fixtures/tokenizer",
           "bos": bos, "eos": eos, "comma": comma,
           "ids_of_piece": ids_of, "cases": cases, "emphasis": emphasis}
    path = os.path.join(FIXTURES, "prompt_chunks.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} cases, {len(ids_of)} piece texts -> {path}")


if __name__ == "__main__":
    main()
