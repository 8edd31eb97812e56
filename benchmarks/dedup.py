"""Near-duplicate removal: Tailor's `near_dedup` step against datatrove's 4-stage MinHash pipeline.

The corpus is `dedup_corpus.py`'s hard set (default 20k records, three quarters of them 20-60 words):
exact copies and one-word substitutions, insertions and deletions of earlier records, and hard
negatives (a third of the words changed; siblings sharing a 40-60% family phrase). Scored by cluster,
whichever member a side keeps (datatrove keeps a union-find root, not the first): precision, recall, F1.

Matched lines: both sides get the same work. The same whitespace word tokenizer (datatrove's spaCy
default is replaced by `str.split` on its simplified text; ours folds case, punctuation and digits
the same way), the same word n-grams, the same bands x rows, plain banding on both sides (ours with
`verify: false`, since datatrove has no verification step), the same JSONL in and kept JSONL out,
one process each (datatrove: LocalPipelineExecutor, 1 worker), the same number of repeats. Speed is
records per CPU-second of that process (wall time on a shared machine measures the neighbours too).
Two matched settings: our defaults' shingles (word pairs, 14 bands x 8 rows) and datatrove's
defaults' (word 5-grams, 14 x 8). A labelled line then gives ours at its own defaults, whose
difference is `verify` (candidates confirmed by their estimated Jaccard).

The check (exit 1 when it fails): our defaults reach precision and recall >= 0.95.

    python benchmarks/dedup.py [--docs 20000] [--repeats 3]

Needs the bench extra (datatrove's JSONL reader and writer need orjson; its xxhash needs xxhash<4):
`make bench` installs it.
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

sys.path.insert(0, str(Path(__file__).parent))
from dedup_corpus import make_corpus, score, write_jsonl  # noqa: E402
from matched import datatrove_tokenizer  # noqa: E402

NUM_PERM = 112


def defaults() -> dict:
    """near_dedup's option defaults, and the bands they imply."""
    from tailor.data.clean.minhash import optimal_bands
    from tailor.spec.clean import NearDedupOptions

    o = NearDedupOptions().model_dump()
    o["bands"] = o["bands"] or optimal_bands(o["threshold"], o["num_perm"])
    return o


def run_ours(folder: Path, ngram: int, bands: int, verify: bool) -> list[int]:
    from tailor.data.clean.near_dedup import NearDedup

    o = defaults()
    step = NearDedup(["text"], threshold=o["threshold"], num_perm=o["num_perm"], ngram=ngram, bands=bands,
                     verify=verify, seed=o["seed"])
    removed = []
    with open(folder / "input" / "docs.jsonl") as src, open(folder / "ours-kept.jsonl", "w") as out:
        for line in src:
            doc = json.loads(line)
            if step(doc) == "near duplicate":
                removed.append(int(doc["id"]))
            else:
                out.write(json.dumps(doc) + "\n")
    return removed


def run_datatrove(folder: Path, ngram: int, bands: int) -> list[int]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    work = folder / "dt"
    shutil.rmtree(work, ignore_errors=True)
    config = MinhashConfig(n_grams=ngram, num_buckets=bands, hashes_per_bucket=NUM_PERM // bands,
                           hash_config=HashConfig(precision=64))
    signature = MinhashDedupSignature(output_folder=str(work / "sigs"), config=config, language=datatrove_tokenizer())
    reader = lambda: JsonlReader(str(folder / "input"))  # noqa: E731
    stages = [
        ([reader(), signature], 1),
        ([MinhashDedupBuckets(input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config)], bands),
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


def child(which: str, folder: Path, ngram: int, bands: int, verify: bool) -> None:
    """Run one contender in this process; print wall and CPU seconds and peak RSS as JSON (removed ids to a file)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    removed = run_ours(folder, ngram, bands, verify) if which == "ours" else run_datatrove(folder, ngram, bands)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    (folder / f"{which}-removed.json").write_text(json.dumps(removed))
    print(json.dumps({"seconds": cpu, "wall": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(which: str, folder: Path, ngram: int, bands: int, verify: bool = False) -> dict:
    args = ["--child", which, "--workdir", str(folder), "--ngram", str(ngram), "--bands", str(bands)]
    out = subprocess.run([sys.executable, __file__, *args, *(["--verify"] if verify else [])],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"dedup: {which} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["removed"] = set(json.loads((folder / f"{which}-removed.json").read_text()))
    return result


def describe(name: str, runs: list[dict], n: int, cluster: list[int], kinds: list[str]) -> tuple[str, dict]:
    """One contender's part of a line, and its figures."""
    s = score(runs[0]["removed"], cluster, kinds)
    rate = n / statistics.median(r["seconds"] for r in runs)
    wall = n / statistics.median(r["wall"] for r in runs)
    peak = max(r["peak_mb"] for r in runs)
    text = (f"{name} P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f} "
            f"({s['clusters_right']}/{s['clusters']} clusters right, {s['wrong_removals']} wrong removals), "
            f"{rate:,.0f} records per CPU-second ({wall:,.0f}/s wall), peak {peak:.0f} MB")
    return text, {**s, "records_per_cpu_s": rate, "records_per_s_wall": wall, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child", choices=["ours", "datatrove"])
    parser.add_argument("--ngram", type=int)
    parser.add_argument("--bands", type=int)
    parser.add_argument("--verify", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.workdir, args.ngram, args.bands, args.verify)
        return
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="tailor-dedup-bench-"))
    texts, cluster, kinds = make_corpus(args.docs)
    write_jsonl(texts, folder / "input" / "docs.jsonl")
    short = sum(len(t.split()) <= 60 for t in texts)
    o = defaults()
    figures: dict = {}
    print(f"dedup corpus: {args.docs} records ({short} of 20-60 words), "
          f"{sum(k != 'fresh' for k in kinds)} injected ({', '.join(f'{k} {kinds.count(k)}' for k in sorted(set(kinds)) if k != 'fresh')}); "
          f"median of {args.repeats} runs per side, 1 process each")
    for label, ngram in (("matched at our defaults' shingles", o["ngram"]), ("matched at datatrove's defaults", 5)):
        runs = {w: [measure(w, folder, ngram, 14 if ngram == 5 else o["bands"]) for _ in range(args.repeats)]
                for w in ("ours", "datatrove")}
        bands = 14 if ngram == 5 else o["bands"]
        ours, fo = describe("ours", runs["ours"], args.docs, cluster, kinds)
        theirs, ft = describe("datatrove", runs["datatrove"], args.docs, cluster, kinds)
        ratio = fo["records_per_cpu_s"] / ft["records_per_cpu_s"]
        figures[f"word {ngram}-grams"] = {"ours": fo, "datatrove": ft, "ratio": ratio}
        print(f"dedup, {label} (word {ngram}-grams, whitespace tokenizer, {bands} bands x {NUM_PERM // bands} rows, "
              f"plain banding): {ours} | {theirs} | speed ratio {ratio:.2f}x")
    runs = [measure("ours", folder, o["ngram"], o["bands"], verify=True) for _ in range(args.repeats)]
    text, fd = describe("ours", runs, args.docs, cluster, kinds)
    figures["ours defaults"] = fd
    print(f"dedup, ours at its defaults (word {o['ngram']}-grams, threshold {o['threshold']}, {o['bands']} bands, "
          f"verify: candidates confirmed by estimated Jaccard, our own option): {text}")
    ok = fd["precision"] >= 0.95 and fd["recall"] >= 0.95
    matched = figures[f"word {o['ngram']}-grams"]
    print(f"dedup: ours/datatrove {matched['ratio']:.2f}x records per CPU-second matched (word {o['ngram']}-grams); "
          f"F1 ours {matched['ours']['f1']:.3f} datatrove {matched['datatrove']['f1']:.3f}; at our defaults "
          f"P {fd['precision']:.3f} R {fd['recall']:.3f} F1 {fd['f1']:.3f} on the hard set "
          f"(check P,R >= 0.95: {'PASS' if ok else 'FAIL'})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if not args.workdir:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
