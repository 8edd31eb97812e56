"""Run every CPU benchmark, one after another, into benchmarks/results.json and benchmarks/results.md.

Each benchmark runs as its own process with the arguments below (sized so that the whole set takes
about 20-30 minutes on a shared 2-core machine); its last line of output is its summary, its exit
status says whether its own check passed. The Markdown table, headed with the date and the machine,
also replaces the block between the `bench:start` and `bench:end` markers of the README. The exit
status is 1 when any benchmark's check failed (every benchmark still runs).

    python benchmarks/run_all.py [--only dedup serve ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# name -> arguments; gpu_check.sh needs a GPU and is not run here
BENCHMARKS: dict[str, list[str]] = {
    "dedup": ["--docs", "20000", "--repeats", "3"],
    "clean": ["--mb", "5", "--repeats", "3"],
    "tokenizer": ["--rounds", "11"],
    "train_scratch": ["--steps", "50", "--rounds", "9"],
    "shakespeare": [],
    "kill_resume": ["--kills", "20"],
    "load": ["--seconds", "30"],
    "serve": ["--prompts", "48", "--repeats", "3"],
    "finetune": ["--steps", "3", "--rounds", "3"],
    "attack": [],
}


def machine() -> str:
    """CPU model, core count, Python and torch versions."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    import torch

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def run(name: str, args: list[str]) -> dict:
    """One benchmark's summary line (its last line of output), exit status and wall seconds."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    seconds = time.perf_counter() - start
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    # lines a benchmark names itself with, besides the summary: matched details, labelled own-option lines
    notes = [line for line in out.stdout.splitlines() + out.stderr.splitlines()
             if line.startswith((f"{name},", f"{name} corpus"))]
    summary = lines[-1] if lines else f"(no summary line; stderr: {out.stderr.strip()[-500:]})"
    return {"name": name, "args": args, "returncode": out.returncode, "check": "pass" if out.returncode == 0 else "FAIL",
            "summary": summary, "labelled": notes, "seconds": round(seconds, 1)}


def table(results: list[dict], when: str, where: str) -> str:
    """The Markdown table of the results, headed with date and machine."""
    rows = [f"Measured {when} on {where}, by `make bench` (medians; each benchmark's own summary line, and "
            "below it any labelled line for an option that is that side's own advantage).", "",
            "| benchmark | check | result | time |", "|---|---|---|---|"]
    for r in results:
        text = r["summary"] + "".join(f"<br>*{line}*" for line in r["labelled"] if line != r["summary"])
        command = " ".join([f"{r['name']}.py", *r["args"]])
        rows.append(f"| `{command}` | {r['check']} | {text.replace('|', '/')} | {r['seconds']:.0f} s |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run these only")
    args = parser.parse_args()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    results = []
    for name, extra in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"running {name}.py {' '.join(extra)}", file=sys.stderr, flush=True)
        results.append(run(name, extra))
        print(f"  {results[-1]['check']} in {results[-1]['seconds']:.0f}s: {results[-1]['summary']}", file=sys.stderr)
    (HERE / "results.json").write_text(json.dumps({"date": when, "machine": where, "results": results}, indent=1) + "\n")
    md = table(results, when, where)
    (HERE / "results.md").write_text(md)
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = re.compile(r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", re.S)
    if block.search(text) and not args.only:
        readme.write_text(block.sub(lambda m: m.group(1) + md + m.group(2), text))
    print(md)
    sys.exit(1 if any(r["returncode"] for r in results) else 0)


if __name__ == "__main__":
    main()
