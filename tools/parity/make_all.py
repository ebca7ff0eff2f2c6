"""Regenerates every fixture under tests/fixtures/, in dependency order.

Usage (from the repository root):
    bash tools/parity/setup.sh && tools/parity/.venv/bin/python tools/parity/make_all.py
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "make_vocab.py",
    "make_tokenizer_cases.py",
    "make_fixtures.py",
    "make_randn.py",
    "make_sampler_runs.py",
    "make_schedules.py",
    "make_scheduler_families.py",
]


def main():
    for script in SCRIPTS:
        print(f"### {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script)], cwd=HERE, check=True)


if __name__ == "__main__":
    main()
