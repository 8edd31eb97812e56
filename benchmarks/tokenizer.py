"""Tailor's tokenizer stage against raw `tokenizers` training on the same text, in the same run.

The stage (read the train split, train, save tokenizer.json and its config, write the report on
the validation split) is timed against the bare library: the same byte-level BPE trained from the
same texts already in memory and saved. Rounds alternate the two; the line reports the median
times and the median of the rounds' overhead ratios (goal: at most 1.1). The check (exit 1 when it
fails): both write the same tokenizer.json, so they did the same work.

    python benchmarks/tokenizer.py [--corpus ../shared/data/tinyshakespeare.txt] [--rounds 11]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tailor.data import STAGE as DATA_STAGE
from tailor.splits import load_split
from tailor.spec import parse_spec
from tailor.tokenizer import STAGE as TOKENIZER_STAGE
from tailor.tokenizer.train import SPECIALS

ROOT = Path(__file__).resolve().parents[1]


def raw_tokenizers(texts: list[str], vocab_size: int, min_frequency: int, out: Path) -> None:
    """The baseline: what a user writes with the library alone."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.save(str(out / "tokenizer.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "tinyshakespeare.txt")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = parse_spec(f"name: bench\nproblem: {{domain: d, task: t}}\ndata:\n"
                          f"  sources: [{{type: files, path: {args.corpus.resolve()}}}]\n"
                          f"  split: {{train: 0.9, validation: 0.1, test: 0.0, shuffle: false}}\n"
                          f"tokenizer: {{type: bpe, vocab_size: {args.vocab_size}}}\n", "bench")
        (work / "data").mkdir()
        DATA_STAGE.call(spec, work / "data")
        texts = [r["text"] for r in load_split(work / "data", "train")]
        times: dict[str, list[float]] = {"ours": [], "raw": []}
        ratios = []
        for i in range(args.rounds + 1):
            for name in ("ours", "raw") if i % 2 else ("raw", "ours"):
                out = work / f"{name}-{i}"
                out.mkdir()
                start = time.perf_counter()
                if name == "ours":
                    TOKENIZER_STAGE.call(spec, out, data_dir=work / "data")
                else:
                    raw_tokenizers(texts, spec.tokenizer.vocab_size, spec.tokenizer.min_frequency, out)
                if i:  # round 0 warms up
                    times[name].append(time.perf_counter() - start)
            if i:  # the two runs of a round saw the same load on the machine
                ratios.append(times["ours"][-1] / times["raw"][-1])
        same = (work / "ours-0" / "tokenizer.json").read_text() == (work / "raw-0" / "tokenizer.json").read_text()
        ours, raw = statistics.median(times["ours"]), statistics.median(times["raw"])
    mb = sum(len(t.encode()) for t in texts) / 1e6
    print(f"tokenizer stage vs raw tokenizers (byte-level BPE, vocab {args.vocab_size}, {mb:.2f} MB train text, "
          f"median of {args.rounds} alternating rounds): ours {ours:.3f}s, raw {raw:.3f}s, overhead ratio "
          f"{statistics.median(ratios):.3f} (median of the rounds' ratios; goal <= 1.1); "
          f"identical tokenizer.json: {same} (check: {'PASS' if same else 'FAIL'})")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
