"""Builds the real CLIP BPE vocabulary offline, as hub-style tokenizer files.

Source: the BPE merges of OpenAI's CLIP (MIT licence) that the open_clip_torch wheel ships as
`open_clip/bpe_simple_vocab_16e6.txt.gz`. The 49,408-entry vocabulary follows from them:
the 256 byte symbols, the same 256 with `</w>`, one entry per merge (the first 48,894 merge
lines after the header), then `<|startoftext|>` (49406) and `<|endoftext|>` (49407).

Writes tests/fixtures/tokenizer/{vocab.json, merges.txt, special_tokens_map.json,
tokenizer_config.json} in the layout of the SD 1.5 hub folder (pad "<|endoftext|>",
model_max_length 77, do_lower_case true), then checks transformers' CLIPTokenizer on them.

Usage: tools/parity/.venv/bin/python tools/parity/make_vocab.py
"""

import gzip
import json
import os
from pathlib import Path

import open_clip

from parity_common import FIXTURES

NUM_MERGES = 49152 - 256 - 2  # 48,894: the merges CLIP's vocabulary is built from
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def byte_symbols():
    """The reversible byte -> printable unicode character table of GPT-2/CLIP BPE.

    Bytes that are printable latin-1 characters map to themselves; the remaining 68 bytes
    map, in byte order, to code points 256, 257, ...
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    # The vocabulary lists the printable ones first, then the remapped ones.
    ordered = [table[b] for b in printable] + [table[b] for b in range(256) if b not in printable]
    return ordered


def read_merges():
    path = Path(os.path.dirname(open_clip.__file__)) / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    header, body = lines[0], lines[1 : 1 + NUM_MERGES]
    assert header.startswith("\"bpe_simple_vocab_16e6.txt#version"), header
    merges = [tuple(line.split()) for line in body]
    assert all(len(m) == 2 for m in merges)
    return merges


def build_vocab(merges):
    symbols = byte_symbols()
    entries = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(entries)}
    assert len(vocab) == len(entries) == 49408, len(vocab)
    return vocab


def added_token(content):
    return {
        "content": content,
        "lstrip": False,
        "normalized": True,
        "rstrip": False,
        "single_word": False,
    }


def write_tokenizer_folder(out_dir: Path, vocab, merges, pad_token):
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    with open(out_dir / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {
        "bos_token": added_token(BOS),
        "eos_token": added_token(EOS),
        "pad_token": pad_token,
        "unk_token": added_token(EOS),
    }
    with open(out_dir / "special_tokens_map.json", "w") as f:
        json.dump(special, f, indent=2)
        f.write("\n")
    config = {
        "add_prefix_space": False,
        "bos_token": dict(added_token(BOS), __type="AddedToken"),
        "do_lower_case": True,
        "eos_token": dict(added_token(EOS), __type="AddedToken"),
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": dict(added_token(EOS), __type="AddedToken"),
    }
    with open(out_dir / "tokenizer_config.json", "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def check(out_dir: Path):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(out_dir))
    ids = tok("a red circle", max_length=77, padding="max_length", truncation=True).input_ids
    assert ids[:5] == [49406, 320, 736, 7117, 49407], ids[:8]
    assert ids[5:] == [49407] * 72, ids[5:10]
    assert len(tok) == 49408, len(tok)
    # The same table open_clip builds for itself from the merges file.
    from open_clip.tokenizer import SimpleTokenizer

    with open(out_dir / "vocab.json", encoding="utf-8") as f:
        ours = json.load(f)
    theirs = dict(SimpleTokenizer().encoder)
    # open_clip 3 spells the two special tokens <start_of_text> / <end_of_text>.
    theirs[BOS] = theirs.pop("<start_of_text>")
    theirs[EOS] = theirs.pop("<end_of_text>")
    assert ours == theirs
    print("tokenizer check ok:", ids[:6], "...", type(tok).__name__)


def main():
    merges = read_merges()
    vocab = build_vocab(merges)
    out_dir = FIXTURES / "tokenizer"
    write_tokenizer_folder(out_dir, vocab, merges, pad_token=EOS)
    check(out_dir)


if __name__ == "__main__":
    main()
