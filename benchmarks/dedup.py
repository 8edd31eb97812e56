"""Near-duplicate removal: Tailor's `near_dedup` step against datatrove's 4-stage MinHash pipeline.

A generated corpus (default 100k documents of Zipf-distributed words) gets exact copies and near copies
(1-3 words changed, exact 5-gram Jaccard still >= the 0.8 threshold) of earlier documents injected at
known positions. Both contenders use the same
MinHash parameters (word 5-grams, 14 bands x 8 rows = 112 hashes), read the same JSONL, write the kept
documents, and run in their own process on one core (datatrove: LocalPipelineExecutor, 1 task per
stage except its 14 bucket tasks, 1 worker). Speed is documents per CPU-second of that process (wall
time on a shared machine measures the neighbours too; it is printed beside). Prints one summary line:
the rates and their ratio (median of the repeats), precision and recall on the injected duplicates,
and peak memory (max RSS).

    python benchmarks/dedup.py [--docs 100000] [--repeats 3] [--datatrove-repeats 1]

Needs the bench extra (datatrove's MinHash steps need orjson and spacy): pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NGRAM, BANDS, ROWS, THRESHOLD = 5, 14, 8, 0.8


def jaccard(a: list[str], b: list[str]) -> float:
    """Exact Jaccard similarity of two documents' word 5-gram sets."""
    sa = {tuple(a[i:i + NGRAM]) for i in range(len(a) - NGRAM + 1)}
    sb = {tuple(b[i:i + NGRAM]) for i in range(len(b) - NGRAM + 1)}
    return len(sa & sb) / len(sa | sb)


def make_corpus(n: int, folder: Path, seed: int = 0) -> set[int]:
    """Write folder/input/docs.jsonl; return the positions of injected duplicates (exact and near)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(30_000)]
    weights = 1 / np.arange(1, len(vocab) + 1) ** 1.1
    weights /= weights.sum()
    docs: list[str] = []
    truth: set[int] = set()
    kinds = rng.random(n)
    lengths = rng.integers(80, 200, n)
    drawn = iter(np.split(rng.choice(len(vocab), size=int(lengths.sum()), p=weights), np.cumsum(lengths)[:-1]))
    for i in range(n):
        if i > 100 and kinds[i] < 0.05:          # an exact copy of an earlier document
            docs.append(docs[rng.integers(0, i)])
            truth.add(i)
        elif i > 100 and kinds[i] < 0.10:        # a near copy: words replaced, Jaccard still >= the threshold
            while True:
                original = docs[rng.integers(0, i)].split()
                words = list(original)
                for _ in range(rng.integers(1, 4)):
                    words[rng.integers(0, len(words))] = vocab[rng.integers(0, len(vocab))]
                if jaccard(original, words) >= THRESHOLD:
                    break
            docs.append(" ".join(words))
            truth.add(i)
        else:
            docs.append(" ".join(vocab[k] for k in next(drawn)))
    (folder / "input").mkdir(parents=True, exist_ok=True)
    with open(folder / "input" / "docs.jsonl", "w") as f:
        for i, text in enumerate(docs):
            f.write(json.dumps({"id": str(i), "text": text}) + "\n")
    return truth


def run_ours(folder: Path) -> list[int]:
    from tailor.data.clean.near_dedup import NearDedup

    step = NearDedup(["text"], threshold=THRESHOLD, num_perm=BANDS * ROWS, ngram=NGRAM, bands=BANDS)
    removed = []
    with open(folder / "input" / "docs.jsonl") as src, open(folder / "ours-kept.jsonl", "w") as out:
        for line in src:
            doc = json.loads(line)
            if step(doc) == "near duplicate":
                removed.append(int(doc["id"]))
            else:
                out.write(json.dumps(doc) + "\n")
    return removed


def run_datatrove(folder: Path) -> list[int]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    work = folder / "dt"
    shutil.rmtree(work, ignore_errors=True)
    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, hash_config=HashConfig(precision=64))
    reader = lambda: JsonlReader(str(folder / "input"))  # noqa: E731
    stages = [
        ([reader(), MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)], 1),
        ([MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config)], BANDS),
        ([MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config)], 1),
        ([reader(), MinhashDedupFilter(input_folder=str(work / "remove"),
                                       exclusion_writer=JsonlWriter(str(work / "removed"), compression=None)),
          JsonlWriter(str(work / "kept"), compression=None)], 1),
    ]
    for i, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / f"logs{i}")).run()
    return [int(json.loads(line)["id"]) for p in sorted((work / "removed").glob("*.jsonl")) for line in open(p)]


def cpu_seconds() -> float:
    """CPU time of this process and any it waited for: the fair clock on a shared, busy machine."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def child(which: str, folder: Path) -> None:
    """Run one contender in this process; print wall and CPU seconds and peak RSS as JSON (removed ids to a file)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    removed = run_ours(folder) if which == "ours" else run_datatrove(folder)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    (folder / f"{which}-removed.json").write_text(json.dumps(removed))
    print(json.dumps({"seconds": cpu, "wall": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(which: str, folder: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", which, "--workdir", str(folder)],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{which} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["removed"] = set(json.loads((folder / f"{which}-removed.json").read_text()))
    return result


def scores(removed: set[int], truth: set[int]) -> tuple[float, float]:
    hit = len(removed & truth)
    return hit / max(len(removed), 1), hit / max(len(truth), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datatrove-repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child", choices=["ours", "datatrove"])
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workdir)
        return
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="tailor-dedup-bench-"))
    truth = make_corpus(args.docs, folder)
    size_mb = (folder / "input" / "docs.jsonl").stat().st_size / 1e6
    runs = {"ours": [measure("ours", folder) for _ in range(args.repeats)],
            "datatrove": [measure("datatrove", folder) for _ in range(args.datatrove_repeats)]}
    line = [f"dedup: {args.docs} docs ({size_mb:.1f} MB), {len(truth)} injected duplicates"]
    rate = {}
    for name, results in runs.items():
        rate[name] = args.docs / statistics.median(r["seconds"] for r in results)
        p, r = scores(results[0]["removed"], truth)
        peak = max(x["peak_mb"] for x in results)
        wall = args.docs / statistics.median(r["wall"] for r in results)
        line.append(f"{name}: {rate[name]:,.0f} docs per CPU-second ({wall:,.0f} docs/s wall), precision {p:.4f}, "
                    f"recall {r:.4f}, peak {peak:.0f} MB")
    line.append(f"speed ratio ours/datatrove {rate['ours'] / rate['datatrove']:.1f}x "
                f"(median of {args.repeats} and {args.datatrove_repeats} runs, 1 process each)")
    print(" | ".join(line))
    if not args.workdir:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
