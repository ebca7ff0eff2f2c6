"""Writes tests/fixtures/prompt_cases.json: A1111's own prompt parser run over tricky prompts.

    python tools/parity/make_prompt_cases.py

Needs A1111's modules/prompt_parser.py outside this repository (AGPL; see a1111_prompt.py) and
lark==1.1.2. For every prompt and step setting it records what A1111 gives: the schedule
(get_learned_conditioning_prompt_schedules), the attention pieces (parse_prompt_attention) of
the prompt and of every scheduled text, the AND parts (get_multicond_prompt_list), and the
extra-network extraction (the `<(\\w+):([^>]+)>` substitution of extra_networks.parse_prompt).
A1111 is run under several Python hash seeds: where Lark's Earley parser resolves an ambiguous
prompt differently per seed, every outcome is recorded and the Rust test accepts any of them.
"""
import json
import os
import re

from a1111_prompt import load_prompt_parser, reference

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "tests", "fixtures", "prompt_cases.json")

PROMPTS = [
    # plain and empty
    "", " ", "a cat", "a cat, sitting on a mat", "  leading and trailing  ", "multi\nline\nprompt",
    # emphasis
    "(a)", "((a))", "(((a)))", "[a]", "[[a]]", "([a])", "[(a)]", "(a:1.3)", "(a: 1.3 )", "(a:+1.3)",
    "(a:-1)", "(a:0)", "(a:.5)", "(a:5.)", "(a:1e3)", "((a:1.5):1.2)", "(a:1.5) (b:0.5)", "(a (b) c)",
    "a (b [c] d) e", "(a)(b)", "()", "[]", "(())", "([])", "(:1.2)", "(a:1.2", "a:1.2)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    # escapes
    "\\(a\\)", "\\[a\\]", "\\\\", "a \\ b", "\\", "(\\(a\\))", "\\((a)\\)", "a\\:b", "\\n\\t",
    # unbalanced
    "(unbalanced", "((a)", "(a))", "a)", "]a[", "[a", "((a][:b:c [d:3]", "([a:1.5)]", "[(a]:1.2)",
    ")(", "(a [b) c]",
    # BREAK
    "a BREAK b", "a BREAK", "BREAK", "BREAK BREAK", "aBREAK b", "a BREAKb", "a break b", "(a BREAK b)",
    "a\nBREAK\nb", "a, BREAK, b", "[a BREAK b:3]",
    # numbers in odd places
    "1girl, 2boys", "(a:1.2.3)", "(a:.)", "a:1.5", "(a::1.2)", "(a:1.2:1.3)",
    # NovelAI braces are plain text in A1111
    "{a}", "{{a}}", "{a:1.2}", "\\{a\\}",
    # prompt editing
    "a [b:3]", "a [b: 3]", "a [b:3 ] c", "a [b : c : 1] d", "[a:b:0.5]", "[a:b:.25]", "[a:b:1.0]",
    "[a:b:1]", "[a:b:0]", "[a:b:-2]", "[a:b:100]", "[a:b:1e1]", "[a::5]", "[:b:5]", "[::5]", "[a:5]",
    "[a:b:5.]", "[a:b:+3]", "a[b:[c:d:2]:1]e", "[[a:b:2]:[c:d:4]:6]", "[(a:1.5):[b]:3]", "[a:b:c:3]",
    "[a:b:3x]", "[a:b:3 4]", "[a:b:0.3] [c:d:0.7]", "[a:b:3][c:d:3]", "a [unbalanced", "a [b:3",
    "[a [b:c:2]:3]", "[a:(b:1.3):4]", "(a [b:c:2] d)", "([a:b:5])", "[a:b:1.5]",
    "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75][ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]",
    # alternation
    "[a|b]", "[a|b|c]", "[a|b] [c|d|e]", "[fe|]male", "[fe|||]male", "[|a]", "[a|[b|c]]", "[a|(b:1.1)]",
    "[a|b:3]", "[[a|b]:c:3]", "[a:[b|c]:3]", "a | b", "[a|b", "a|", "[a|b]|", "[a|b]]",
    # AND
    "a AND b", "a AND b :1.2", "a :0.5 AND b : 1.5", "a AND", "AND", "ANDROID AND android", "a ANDb",
    "a AND b AND a", "a:1.2 AND (b:1.3)", "[a:b:3] AND [c|d]", "a AND b :-0.5", "a AND b:2.",
    # extra networks
    "a <lora:foo:0.8> b", "<lora:foo>", "<lora:foo:0.5:0.3>", "<lyco:bar:1>", "<hypernet:h:0.5> x",
    "<lora:a:te=0.5:unet=0.2>", "<lora:a<lora:b:1>>", "<foo:bar> baz", "<lora foo:1>", "(<lora:x:1>)",
    # unicode
    "猫 (犬:1.2) [鳥]", "café (crème brûlée)", "emoji 🎨 (🌸:1.3)", "ａ（ｂ）", "\u3000(a)\u3000",
    "a\u00a0BREAK\u00a0b", "Ω [α:β:2]", "[🍎|🍊]",
    # ambiguous for Lark: A1111's answer depends on the Python hash seed
    "{e {ac[:\t3]]\t",
]

STEP_SETTINGS = [
    {"steps": 10, "hires_steps": None, "old": False},
    {"steps": 20, "hires_steps": None, "old": False},
    {"steps": 1, "hires_steps": None, "old": False},
    {"steps": 20, "hires_steps": None, "old": True},
    {"steps": 20, "hires_steps": 10, "old": False},
    {"steps": 3, "hires_steps": None, "old": True},
]

EXTRA_NET = re.compile(r"<(\w+):([^>]+)>")


def extra_networks(prompt):
    calls = []

    def found(m):
        calls.append([m.group(1), m.group(2).split(":")])
        return ""

    return {"text": EXTRA_NET.sub(found, prompt), "calls": calls}


def attention(pp, text):
    try:
        return [list(x) for x in pp.parse_prompt_attention(text)]
    except Exception as e:  # A1111 raises where float() refuses a weight
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    pp = load_prompt_parser()
    runs = []
    for prompt in PROMPTS:
        # Alternation makes one entry per step: keep those prompts to one setting.
        settings = STEP_SETTINGS if "|" not in prompt else STEP_SETTINGS[:1]
        for s in settings:
            runs.append(dict(prompt=prompt, **s))
    results = reference(runs)
    cases = {}
    texts = {}
    for run, options in zip(runs, results):
        prompt = run["prompt"]
        case = cases.setdefault(prompt, {
            "prompt": prompt,
            "attention": options[0]["attention"],
            "and": options[0]["and"],
            "extra_networks": extra_networks(prompt),
            "schedules": [],
        })
        schedules = [o["schedule"] for o in options]
        case["schedules"].append({k: run[k] for k in ("steps", "hires_steps", "old")} | {"a1111": schedules})
        for sched in schedules:
            for _, text in sched:
                texts.setdefault(text, attention(pp, text))
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"source": "AUTOMATIC1111 modules/prompt_parser.py (commit 28bd8e14), lark 1.1.2",
                   "cases": list(cases.values()),
                   "attention_of_scheduled_texts": texts},
                  f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    ambiguous = sum(1 for r in results if len(r) > 1)
    print(f"{len(PROMPTS)} prompts, {len(runs)} schedules ({ambiguous} hash-seed dependent), "
          f"{len(texts)} scheduled texts -> {OUT}")


if __name__ == "__main__":
    main()
