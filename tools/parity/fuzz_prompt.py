"""Differential fuzzing of kakusan-prompt against A1111's prompt parser (run by hand).

    cargo build -p kakusan-prompt --example prompt_lines
    python tools/parity/fuzz_prompt.py $CARGO_TARGET_DIR/debug/examples/prompt_lines [N] [SEED]

Random prompts over an alphabet heavy in syntax characters; compares the schedule (exact), the
attention pieces (texts exact, weights bit for bit) and the AND parts. Prints mismatches.
"""
import json
import random
import subprocess
import sys

from a1111_prompt import reference

ALPHABET = ["a", "b", "c", " ", " ", "(", ")", "[", "]", ":", ":", "|", "\\", "1", "2", ".5",
            "0.3", "3", "-", "BREAK", "AND", "\n", "{", "}", ",", "1.2", "e", "é", "猫", "\t"]


def random_prompt(rng):
    n = rng.randint(0, rng.choice([8, 14, 30]))
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def main():
    exe = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        steps = rng.choice([1, 3, 10, 20])
        hires = rng.choice([None, None, None, 7])
        old = rng.random() < 0.2
        cases.append({"prompt": random_prompt(rng), "steps": steps, "hires_steps": hires, "old": old})
    inp = "".join(json.dumps(c) + "\n" for c in cases)
    res = subprocess.run([exe], input=inp, capture_output=True, text=True, check=True)
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    bad = 0
    ambiguous = 0
    wants = reference(cases)
    for c, got, want_all in zip(cases, outs, wants):
        if len(want_all) > 1:
            ambiguous += 1
        for key in ("schedule", "attention", "and"):
            options = [w[key] for w in want_all if not isinstance(w[key], dict)]
            if not options:
                continue
            if got[key] not in options:
                bad += 1
                if bad <= 30:
                    print(key, repr(c["prompt"]), c["steps"], c["hires_steps"], c["old"])
                    for w in options:
                        print("   want", w)
                    print("   got ", got[key])
    print(f"{len(cases)} prompts, {ambiguous} on which A1111 depends on the hash seed, {bad} mismatches")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
