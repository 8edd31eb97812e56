"""Throughput of the cleaning steps, in MB of text per second on one core.

Measures the default chain (`data.clean` when the spec says nothing: normalize, dedup) and a fuller
chain on a generated English-like corpus with e-mails, phone numbers, mojibake and repeated lines.
The named baseline is datatrove's GopherQualityFilter against our `quality` step with `gopher: true`
on the same documents, in the same run. Times are CPU time of this one process (on a shared machine,
wall time would measure the neighbours too). Prints one summary line (medians of the repeats).

    python benchmarks/clean.py [--mb 20] [--repeats 3]

The datatrove baseline needs the bench extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from tailor.data.clean import build_steps
from tailor.spec.data import Data

WORDS = ("the of and to a in is it that for on with as was drill saw battery motor blade wood metal "
         "cordless charger torque speed grip case handle chuck bit screw nail sander cable power quick "
         "strong light heavy small large works well lasts hours cuts through delivers ships arrives").split()
FULL = [{"fix_text": {}}, {"normalize": {}}, {"quality": {"gopher": True}}, {"pii": {}}, {"dedup": {}},
        {"near_dedup": {}}]


def corpus(megabytes: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs, size = [], 0
    while size < megabytes * 1e6:
        sentences = []
        for _ in range(rng.randint(3, 12)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
            sentences.append(" ".join(words).capitalize() + rng.choice([".", ".", "!", "?"]))
        text = " ".join(sentences)
        roll = rng.random()
        if roll < 0.1:
            text += f" Write to user{rng.randint(1, 999)}@example.com or call +1 555 {rng.randint(100, 999)} 0199."
        elif roll < 0.15:
            text = text.replace("'", "â€™") + " Itâ€™s great."
        elif roll < 0.2:
            text += "\nBuy now!\nBuy now!\nBuy now!"
        docs.append(text)
        size += len(text.encode())
    return docs


def chain_seconds(clean: list[dict], docs: list[str]) -> float:
    steps = build_steps(Data(sources=[{"type": "files", "path": "x"}], clean=clean))
    start = time.process_time()
    for text in docs:
        record = {"text": text}
        for step in steps:
            record = step(record)
            if isinstance(record, str):
                break
    return time.process_time() - start


def datatrove_gopher_seconds(docs: list[str]) -> float:
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter

    gopher = GopherQualityFilter()
    documents = [Document(text=t, id=str(i)) for i, t in enumerate(docs)]
    gopher.filter(Document(text=docs[0], id="warm-up"))  # loads its word tokenizer outside the timing
    start = time.process_time()
    for doc in documents:
        gopher.filter(doc)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    docs = corpus(args.mb)
    mb = sum(len(t.encode()) for t in docs) / 1e6
    default = Data(sources=[{"type": "files", "path": "x"}]).clean
    timings = {
        "default": [chain_seconds(default, docs) for _ in range(args.repeats)],
        "full": [chain_seconds(FULL, docs) for _ in range(args.repeats)],
        "quality": [chain_seconds([{"quality": {"gopher": True}}], docs) for _ in range(args.repeats)],
        "datatrove": [datatrove_gopher_seconds(docs) for _ in range(args.repeats)],
    }
    rate = {k: mb / statistics.median(v) for k, v in timings.items()}
    names = lambda clean: ", ".join(next(iter(s)) for s in clean)  # noqa: E731
    print(f"clean: {len(docs)} docs ({mb:.1f} MB), 1 core, median of {args.repeats} | "
          f"default chain [{names(default)}] {rate['default']:.1f} MB/s | full chain [{names(FULL)}] {rate['full']:.2f} MB/s | "
          f"quality (gopher rules) {rate['quality']:.1f} MB/s vs datatrove GopherQualityFilter {rate['datatrove']:.1f} MB/s "
          f"= {rate['quality'] / rate['datatrove']:.2f}x")


if __name__ == "__main__":
    main()
