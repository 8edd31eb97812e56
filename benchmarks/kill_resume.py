"""Fault tolerance: SIGKILL `tailor train` at 20 random moments, resume each time, compare with an uninterrupted run.

Half of the kills land while a checkpoint is being written (the moment its temp folder appears),
the rest at a random time. After every kill the rows logged so far are compared with the
uninterrupted run's rows of the same steps, and at the end the trained weights are compared too.
The summary line says how many resumes continued the uninterrupted curve exactly.

    python benchmarks/kill_resume.py [--kills 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

COLOURS = ["red", "blue", "green", "black", "white", "amber", "violet", "grey"]
SPEC = {
    "name": "kill-resume",
    "problem": {"domain": "benchmarks", "task": "answer colour questions", "output": "text"},
    "data": {"sources": [{"type": "files", "path": "data/items.jsonl"}],
             "fields": {"input": "question", "output": "answer"},
             "split": {"train": 0.8, "validation": 0.2, "test": 0.0, "seed": 0}},
    "tokenizer": {"type": "bpe", "vocab_size": 320},
    "model": {"arch": {"n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.1}},  # dropout: RNG must resume too
    "train": {"max_steps": 1000, "batch_size": 16, "eval_every": 20, "eval_batches": 2,
              "checkpoints": {"every": 4, "keep_last": 2}, "schedule": {"warmup_steps": 20}},
}


def write_data(root: Path) -> Path:
    rng = random.Random(0)
    frames = ["what colour is item {i}", "item {i} colour?", "tell me the colour of item {i}",
              "which colour does item {i} have"]
    rows = [{"question": rng.choice(frames).format(i=i), "answer": COLOURS[i % len(COLOURS)]}
            for i in range(40) for _ in range(5)]
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    return spec


def command(spec: Path, runs: Path) -> list[str]:
    return [sys.executable, "-m", "tailor.cli", "train", str(spec), "--runs-dir", str(runs)]


def logged(path: Path) -> dict[tuple[int, str], float]:
    """(step, split) -> loss for every complete row of a metrics.jsonl."""
    out = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a killed writer
        out[(row["step"], row["split"])] = row["loss"]
    return out


def metrics_of(runs: Path) -> Path:
    found = list(runs.glob(f"{SPEC['name']}/*/train.work/metrics.jsonl"))
    return found[0] if found else runs / "none"


def temp_folders(runs: Path) -> list[str]:
    """Checkpoint folders being written (atomic writes go through hidden temp folders)."""
    return [p.name for p in runs.glob(f"{SPEC['name']}/*/train.work/checkpoints/.step-*")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    spec = write_data(root)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}

    subprocess.run(command(spec, root / "reference"), check=True, env=env, capture_output=True)
    ref_run = next((root / "reference" / SPEC["name"]).iterdir())
    reference = logged(ref_run / "train" / "metrics.jsonl")

    runs = root / "killed"
    matched, kills, during_writes = 0, 0, 0
    while kills < args.kills:
        temps_before = set(temp_folders(runs))
        rows_before = len(logged(metrics_of(runs)))
        proc = subprocess.Popen(command(spec, runs), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        at_write = kills % 2 == 0
        hit_write = False
        # wait until this process trains (a new row), then kill at the next checkpoint write or at a random moment
        while proc.poll() is None and len(logged(metrics_of(runs))) <= rows_before:
            time.sleep(0.005)
        deadline = time.perf_counter() + (120 if at_write else rng.uniform(0.0, 1.0))
        while proc.poll() is None and time.perf_counter() < deadline:
            if at_write and set(temp_folders(runs)) - temps_before:
                hit_write = True
                break
            time.sleep(0.001)
        if proc.poll() is not None:
            if proc.returncode != 0:
                sys.exit(f"kill_resume: the resumed training failed:\n{proc.stderr.read().decode()[-2000:]}")
            break  # training finished before this kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        during_writes += hit_write
        work = logged(metrics_of(runs))
        same = all(reference.get(key) == value for key, value in work.items())
        matched += same and kills > 1  # the rows since the previous kill are what the previous resume computed
        print(f"kill {kills:2d}: {'during a checkpoint write' if hit_write else 'at a random moment':26s} "
              f"{len(work):4d} rows logged, {'match' if same else 'DIFFER'}", file=sys.stderr)
    final = subprocess.run(command(spec, runs), env=env, capture_output=True, text=True)
    run_dir = next((runs / SPEC["name"]).iterdir())
    done = logged(run_dir / "train" / "metrics.jsonl")
    complete = final.returncode == 0 and done == reference
    from safetensors.torch import load_file

    a = load_file(str(ref_run / "train" / "model" / "model.safetensors"))
    b = load_file(str(run_dir / "train" / "model" / "model.safetensors"))
    same_weights = a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    matched += complete and same_weights  # the last resume ran to the end
    print(f"kill_resume: {matched} of {kills} resumes matched the uninterrupted curve ({during_writes} kills during "
          f"checkpoint writes); final curve {'identical' if complete else 'DIFFERENT'} ({len(done)} rows), "
          f"final weights {'identical' if same_weights else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
