"""Records CLIP tokenizer reference ids for many strings -> tests/fixtures/tokenizer_cases.json.

Reference: transformers' CLIPTokenizer loaded from tests/fixtures/tokenizer (made by
make_vocab.py), called with max_length=77, padding="max_length", truncation=True, once with
pad "<|endoftext|>" (SD1 hub folders) and once with pad "!" (SD2 hub folders).

transformers >= 5 has only the `tokenizers`-backed CLIPTokenizer: its clean-up is NFC, runs of
whitespace -> one space, lower case; it never calls ftfy or html.unescape, even when ftfy is
installed. The original OpenAI/open_clip algorithm (and transformers 4's slow CLIPTokenizer
with ftfy installed, as A1111 has it) runs ftfy.fix_text and html.unescape twice first.
Each case therefore also carries `ids_ftfy`: the same 77-id layout from open_clip's
SimpleTokenizer (ftfy + html.unescape + whitespace clean + lower), and `same_as_ftfy`.

Output: a JSON list of objects:
  text, pad, ids (77 ints, the reference), category, n_tokens (untruncated count including
  BOS/EOS), truncated (bool), cleanup (which clean-up made `ids`), ids_ftfy, same_as_ftfy.

Usage: tools/parity/.venv/bin/python tools/parity/make_tokenizer_cases.py
"""

import importlib.util
import json

import transformers
from transformers import CLIPTokenizer

from parity_common import FIXTURES

MAX_LEN = 77
BOS_ID, EOS_ID = 49406, 49407

LONG_PROMPT = (
    "masterpiece, best quality, ultra detailed, 8k wallpaper, a breathtaking panoramic view of "
    "an ancient city built into the side of a colossal mountain, waterfalls cascading between "
    "marble towers, golden hour lighting, volumetric fog, intricate architecture, flying "
    "airships, lush hanging gardens, reflections in crystal clear lakes, dramatic clouds, "
    "highly detailed matte painting, trending on artstation, by greg rutkowski and alphonse mucha"
)


def cases():
    c = []

    def add(category, *texts):
        for t in texts:
            c.append((category, t))

    add(
        "plain",
        "a red circle",
        "a photograph of an astronaut riding a horse",
        "a cat",
        "cat",
        "A beautiful landscape painting of mountains at sunset",
        "portrait of a woman, oil on canvas",
        "a dog sitting on a bench in a park",
        "the quick brown fox jumps over the lazy dog",
        "cyberpunk city street at night, neon lights, rain",
        "a bowl of fruit on a wooden table, still life",
        "low quality, blurry, watermark, text",
        "ugly, deformed, extra fingers, bad anatomy",
        "a",
        "an isometric pixel art castle",
    )
    add(
        "a1111_weights",
        "(masterpiece:1.2), best quality, (detailed eyes:1.1)",
        "((best quality)), [blurry], (cat:0.8)",
        "a [red|blue] car",
        "(((epic))) landscape, [[[low detail]]]",
        "portrait AND landscape",
        "a photo of sks dog, (smiling:1.3)",
        "\\(escaped parens\\) and \\[brackets\\]",
        "<lora:add_detail:0.5> a castle",
        "embedding:EasyNegative, (worst quality:1.4)",
        "[cat:dog:0.5] in a field",
        "BREAK a second chunk",
    )
    add(
        "punctuation",
        "!!!",
        "hello, world!",
        "what?!?! really...",
        "a -- b --- c",
        "foo_bar_baz",
        "@#$%^&*()",
        "\"quoted\" 'single'",
        "semi;colon:colon",
        "slash/back\\slash|pipe",
        "~~~tilde~~~",
        "a.b.c.d",
        "....",
        "{curly} <angle> [square]",
        "+-*/=",
        "😀",
    )
    add(
        "digits",
        "8k",
        "4k uhd, 1080p",
        "1234567890",
        "3.14159",
        "year 2024",
        "1girl, 2boys",
        "v1.5",
        "100%",
        "007",
        "1,000,000 stars",
    )
    add(
        "long_words",
        "supercalifragilisticexpialidocious",
        "pneumonoultramicroscopicsilicovolcanoconiosis",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "qwxzkvbjqwxzkvbjqwxzkvbj",
        "antidisestablishmentarianism and floccinaucinihilipilification",
        "hyperrealistic_photorealistic_ultradetailed",
    )
    add(
        "truncation",
        LONG_PROMPT,
        "cat " * 80,
        "a, " * 60,
        " ".join(str(i) for i in range(100)),
        "word " * 75,
        "word " * 76,
        "word " * 74,
        "supercalifragilisticexpialidocious " * 10,
    )
    add(
        "unicode",
        "café",
        "naïve résumé",
        "Crème brûlée",
        "São Paulo",
        "Zürich straße",
        "e\u0301 decomposed accent",
        "ﬁsh ﬂower ligatures",
        "“curly quotes” and ‘single’",
        "cafÃ© mojibake",
        "Ελληνικά γράμματα",
        "русский текст",
        "中文提示词",
        "한국어 프롬프트",
        "emoji 🐱🐶 pets",
        "🔥🔥🔥 fire",
        "👩‍🚀 astronaut zwj",
        "flag 🇯🇵",
        "non\u00a0breaking space",
        "zero\u200bwidth",
        "em—dash and en–dash",
        "…ellipsis char",
        "½ fraction",
        "™ ® ©",
    )
    add(
        "japanese",
        "猫",
        "富士山と桜",
        "かわいい女の子",
        "カタカナ",
        "東京の夜景、ネオン",
        "日本語 and english mixed",
    )
    add(
        "whitespace",
        "",
        " ",
        "   leading spaces",
        "trailing spaces   ",
        "multiple    spaces   between",
        "new\nline",
        "tabs\tand\ttabs",
        "\n\n\n",
        "mixed \t\n whitespace",
        "carriage\r\nreturn",
    )
    add(
        "contractions",
        "it's a dog's life",
        "they're here",
        "I've seen it, we'll go, you'd know, I'm sure, don't",
        "IT'S LOUD",
        "rock'n'roll",
        "o'clock",
        "'s alone",
    )
    add(
        "case",
        "A RED CIRCLE",
        "CamelCaseWords",
        "MiXeD cAsE",
        "UPPERCASE PROMPT WITH WORDS",
        "İstanbul",
    )
    add(
        "html_entities",
        "rock &amp; roll",
        "&lt;tag&gt;",
        "&quot;quoted&quot;",
        "caf&eacute;",
        "&#39;apostrophe&#39;",
        "&nbsp;space",
        "&amp;amp; double",
    )
    add(
        "special_tokens",
        "<|startoftext|>",
        "<|endoftext|>",
        "a <|endoftext|> b",
        "<|startoftext|>hello<|endoftext|>",
    )
    return c


def openai_ids(simple_tok, text, pad_id):
    """77 ids by the original OpenAI algorithm (open_clip SimpleTokenizer, ftfy clean-up)."""
    body = simple_tok.encode(text)
    ids = [BOS_ID] + body
    ids = ids[: MAX_LEN - 1] + [EOS_ID]
    n = len(body) + 2
    ids = ids + [pad_id] * (MAX_LEN - len(ids))
    return ids, n


def main():
    from open_clip.tokenizer import SimpleTokenizer

    simple = SimpleTokenizer()
    ftfy_installed = importlib.util.find_spec("ftfy") is not None
    cleanup = (
        f"transformers {transformers.__version__} CLIPTokenizer (tokenizers backend): "
        "NFC, \\s+ -> ' ', lowercase; no ftfy, no html.unescape "
        f"(ftfy installed in the venv: {ftfy_installed}, unused by this tokenizer)"
    )
    out = []
    for pad in ["<|endoftext|>", "!"]:
        tok = CLIPTokenizer.from_pretrained(str(FIXTURES / "tokenizer"), pad_token=pad)
        pad_id = tok.convert_tokens_to_ids(pad)
        assert pad_id == (EOS_ID if pad == "<|endoftext|>" else 0)
        for category, text in cases():
            ids = tok(text, max_length=MAX_LEN, padding="max_length", truncation=True).input_ids
            assert len(ids) == MAX_LEN
            full = tok(text).input_ids
            ref_ftfy, _ = openai_ids(simple, text, pad_id)
            out.append(
                {
                    "text": text,
                    "pad": pad,
                    "ids": ids,
                    "category": category,
                    "n_tokens": len(full),
                    "truncated": len(full) > MAX_LEN,
                    "cleanup": cleanup,
                    "ids_ftfy": ref_ftfy,
                    "same_as_ftfy": ref_ftfy == ids,
                }
            )
    n_texts = len(cases())
    assert n_texts >= 100, n_texts
    assert len({t for _, t in cases()}) == n_texts, "duplicate case"
    path = FIXTURES / "tokenizer_cases.json"
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i, case in enumerate(out):
            f.write("  " + json.dumps(case, ensure_ascii=False))
            f.write(",\n" if i + 1 < len(out) else "\n")
        f.write("]\n")
    differing = [c["text"] for c in out if not c["same_as_ftfy"] and c["pad"] == "!"]
    print(f"{n_texts} texts x 2 pads -> {path}")
    print(f"{len(differing)} texts where the ftfy/OpenAI clean-up gives other ids:")
    for t in differing:
        print("   ", repr(t))


if __name__ == "__main__":
    main()
