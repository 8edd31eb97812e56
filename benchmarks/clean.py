"""Throughput of the cleaning steps, in MB of text per second on one core.

Measures the default chain (`data.clean` when the spec says nothing: normalize, dedup) and a fuller
chain on a generated English-like corpus with e-mails, phone numbers, mojibake and repeated lines.
The named baseline is datatrove's GopherQualityFilter against our `quality` step with `gopher: true`
on the same documents, in the same run, both splitting words with the same regular expression
(datatrove's default is spaCy's tokenizer; ours is `\w+`). Times are CPU time of this one process (on a shared machine,
wall time would measure the neighbours too). Prints one summary line (medians of the repeats).
The check (exit 1 when it fails): both Gopher filters make the same keep/drop decision on at least 99% of the documents, so the two timings are of the same work.

    python benchmarks/clean.py [--mb 20] [--repeats 3]

The datatrove baseline needs the bench extra (`make bench` installs it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import sys
from pathlib import Path

from tailor.data.clean import build_steps
from tailor.spec.data import Data

sys.path.insert(0, str(Path(__file__).parent))
from matched import datatrove_tokenizer  # noqa: E402

WORDS = ("the of and to a in is it that for on with as was drill saw battery motor blade wood metal "
         "cordless charger torque speed grip case handle chuck bit screw nail sander cable power quick "
         "strong light heavy small large works well lasts hours cuts through delivers ships arrives").split()
# only the Gopher rules, the work datatrove's filter does (its document-length bounds are off, as ours has none)
GOPHER = [{"quality": {"gopher": True, "max_symbol_ratio": None, "max_digit_ratio": None,
                       "max_duplicate_line_ratio": None, "max_top_ngram_ratio": None}}]
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


def datatrove_gopher():
    """datatrove's Gopher filter splitting words as our quality step does, without its length bounds."""
    from datatrove.pipeline.filters import GopherQualityFilter

    return GopherQualityFilter(min_doc_words=None, max_doc_words=None, language=datatrove_tokenizer(r"\w+"))


def agreement(docs: list[str]) -> float:
    """Share of documents on which our Gopher rules and datatrove's make the same keep/drop decision."""
    from datatrove.data import Document

    (ours,) = build_steps(Data(sources=[{"type": "files", "path": "x"}], clean=GOPHER))
    theirs = datatrove_gopher()
    same = 0
    for i, text in enumerate(docs):
        verdict = theirs.filter(Document(text=text, id=str(i)))
        same += (not isinstance(ours({"text": text}), str)) == (verdict is True or (isinstance(verdict, tuple) and verdict[0]))
    return same / len(docs)


def datatrove_gopher_seconds(docs: list[str]) -> float:
    from datatrove.data import Document

    gopher = datatrove_gopher()
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
        "quality": [chain_seconds(GOPHER, docs) for _ in range(args.repeats)],
        "datatrove": [datatrove_gopher_seconds(docs) for _ in range(args.repeats)],
    }
    rate = {k: mb / statistics.median(v) for k, v in timings.items()}
    same = agreement(docs)
    names = lambda clean: ", ".join(next(iter(s)) for s in clean)  # noqa: E731
    print(f"clean: {len(docs)} docs ({mb:.1f} MB), 1 core, median of {args.repeats} | "
          f"default chain [{names(default)}] {rate['default']:.1f} MB/s | full chain [{names(FULL)}] {rate['full']:.2f} MB/s | "
          f"Gopher rules, matched (same regex words, the same rules): ours {rate['quality']:.1f} MB/s vs datatrove "
          f"GopherQualityFilter {rate['datatrove']:.1f} MB/s = {rate['quality'] / rate['datatrove']:.2f}x; same decision "
          f"on {100 * same:.1f}% of documents (check >= 99%: {'PASS' if same >= 0.99 else 'FAIL'})")
    sys.exit(0 if same >= 0.99 else 1)


if __name__ == "__main__":
    main()
