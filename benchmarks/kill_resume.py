"""Fault tolerance: SIGKILL `tailor train` at 20 random moments, resume each time, compare with an uninterrupted run.

Half of the kills land while a checkpoint is being written (the moment its temp folder appears),
the rest at a random time. After every kill the benchmark notes the newest complete checkpoint on
disk (checksums verified) and requires the next run to say it resumed from exactly that step; the
rows logged so far must exist and equal the uninterrupted run's rows of the same steps, and at the
end the whole curve and the trained weights must be identical. (A run that restarts from step 0
reproduces the same curve, since training is deterministic: the resume step is what tells them apart.)
The summary line says how many resumes passed; the exit status is 1 when any check failed.

    python benchmarks/kill_resume.py [--kills 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


def write_data(root: Path, spec_dict: dict = SPEC) -> Path:
    rng = random.Random(0)
    frames = ["what colour is item {i}", "item {i} colour?", "tell me the colour of item {i}",
              "which colour does item {i} have"]
    rows = [{"question": rng.choice(frames).format(i=i), "answer": COLOURS[i % len(COLOURS)]}
            for i in range(40) for _ in range(5)]
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_dict, sort_keys=False))
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


def newest_complete_checkpoint(runs: Path) -> int | None:
    """Step of the newest checkpoint on disk whose manifest checksums match (a `.old` copy counts: it is restored)."""
    from tailor.train.checkpoint import verify

    steps = []
    for folder in runs.glob(f"{SPEC['name']}/*/train.work/checkpoints/*step-*"):
        m = re.match(r"^\.?step-(\d+)(\.old-\d+)?$", folder.name)
        if m and verify(folder) is None:
            steps.append(int(m.group(1)))
    return max(steps, default=None)


def resumed_from(log: Path) -> int | None:
    """The step a run says it resumed from (None: it started afresh)."""
    m = re.search(r"resuming from .*?\(step (\d+) of", log.read_text(errors="replace"), re.S)
    return int(m.group(1)) if m else None


def launch(spec: Path, runs: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command(spec, runs), env=env, stdout=out, stderr=subprocess.STDOUT)


def kill_once(proc: subprocess.Popen, runs: Path, at_write: bool, rows_before: int, rng: random.Random) -> str | None:
    """Wait until proc trains (a new row), then SIGKILL it at the next checkpoint write or at a random moment.

    Returns where the kill landed, or None when the run ended first.
    """
    temps_before = set(temp_folders(runs))
    while proc.poll() is None and len(logged(metrics_of(runs))) <= rows_before:
        time.sleep(0.005)
    deadline = time.perf_counter() + (120 if at_write else rng.uniform(0.0, 1.0))
    hit_write = False
    while proc.poll() is None and time.perf_counter() < deadline:
        if at_write and set(temp_folders(runs)) - temps_before:
            hit_write = True
            break
        time.sleep(0.001)
    if proc.poll() is not None:
        return None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return "during a checkpoint write" if hit_write else "at a random moment"


def trial(root: Path, kills: int, seed: int = 0, spec_dict: dict = SPEC,
          before_resume: Callable[[Path], None] | None = None, log=print) -> dict:
    """Kill and resume training `kills` times in root; every launch's expected and reported resume step, and the verdicts.

    before_resume(runs) runs after each kill, once the expected step is noted (a test removes checkpoints there).
    """
    rng = random.Random(seed)
    spec = write_data(root, spec_dict)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", "PYTHONUNBUFFERED": "1"}
    subprocess.run(command(spec, root / "reference"), check=True, env=env, capture_output=True)
    ref_run = next((root / "reference" / spec_dict["name"]).iterdir())
    reference = logged(ref_run / "train" / "metrics.jsonl")
    runs, launches, expected = root / "killed", [], None
    while True:
        log_file = root / f"launch-{len(launches)}.log"
        proc = launch(spec, runs, env, log_file)
        where = kill_once(proc, runs, len(launches) % 2 == 0, len(logged(metrics_of(runs))), rng) \
            if len(launches) < kills else None
        if where is None:
            proc.wait()
        rows = logged(metrics_of(runs)) if where else {}
        entry = {"kill": where, "expected": expected, "resumed": resumed_from(log_file), "rows": len(rows),
                 "rows_match": bool(rows) and all(reference.get(k) == v for k, v in rows.items()),
                 "returncode": proc.returncode, "log": log_file.read_text(errors="replace")[-2000:]}
        launches.append(entry)
        if where is None:
            break
        log(f"kill {len(launches):2d}: {where:26s} {len(rows):4d} rows logged, "
            f"{'match' if entry['rows_match'] else 'DIFFER'}; this run resumed from {entry['resumed']} "
            f"(expected {entry['expected']})")
        expected = newest_complete_checkpoint(runs)
        if before_resume:
            before_resume(runs)
    from safetensors.torch import load_file

    finals = list((runs / spec_dict["name"]).glob("*/train/model/model.safetensors"))
    done = logged(finals[0].parents[1] / "metrics.jsonl") if finals else {}
    a = load_file(str(ref_run / "train" / "model" / "model.safetensors"))
    b = load_file(str(finals[0])) if finals else {}
    return {"launches": launches, "reference_rows": len(reference), "final_rows": len(done),
            "curve_identical": bool(done) and done == reference,
            "weights_identical": a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)}


def problems(result: dict) -> list[str]:
    """Every failed check of a trial; empty when all passed."""
    out = []
    launches = result["launches"]
    if len(launches) < 2:
        out.append("no kill landed: training finished first")
    for i, entry in enumerate(launches):
        if entry["expected"] != entry["resumed"]:
            out.append(f"launch {i + 1} resumed from step {entry['resumed']}, the newest complete checkpoint "
                       f"was step {entry['expected']}")
        if entry["kill"] and not entry["rows"]:
            out.append(f"launch {i + 1} logged no rows before its kill")
        elif entry["kill"] and not entry["rows_match"]:
            out.append(f"launch {i + 1}: rows differ from the uninterrupted run")
    if launches and launches[-1]["returncode"] != 0:
        out.append(f"the last run failed: {launches[-1]['log']}")
    if not result["curve_identical"]:
        out.append(f"final curve differs ({result['final_rows']} rows vs {result['reference_rows']})")
    if not result["weights_identical"]:
        out.append("final weights differ")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    result = trial(Path(tempfile.mkdtemp(prefix="kill-resume-")), args.kills, args.seed,
                   log=lambda line: print(line, file=sys.stderr))
    found = problems(result)
    launches = result["launches"]
    kills = [e for e in launches if e["kill"]]
    resumes = launches[1:]
    good = sum(e["expected"] == e["resumed"] and (not e["kill"] or e["rows_match"]) for e in resumes)
    print(f"kill_resume: {good} of {len(resumes)} resumes continued from the newest complete checkpoint "
          f"(steps {', '.join(str(e['resumed']) for e in resumes)}) and matched the uninterrupted curve; "
          f"{sum(e['kill'] == 'during a checkpoint write' for e in kills)} of {len(kills)} kills during checkpoint "
          f"writes; final curve {'identical' if result['curve_identical'] else 'DIFFERENT'} "
          f"({result['final_rows']} rows), final weights {'identical' if result['weights_identical'] else 'DIFFERENT'}: "
          f"{'PASS' if not found else 'FAIL: ' + '; '.join(found[:5])}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
