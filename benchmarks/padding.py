"""Padding in a run's training batches, with and without length grouping, from the run's own data and tokenizer.

Builds the train split's batches the way the run's training does (the same encoding, batch size, seed and
collation: `tailor.train.batches.make_batches`), once with `train.group_by_length` off and once on, and
counts over whole epochs the positions the model computes that are padding (1 - real tokens / positions,
real tokens as the training loop counts them). Nothing is trained: the fraction depends only on which
examples share a batch.

    python benchmarks/padding.py runs/<name>/<run-id> [--epochs 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tailor.models import context_length, is_seq2seq, labels_of, load_model
from tailor.spec import load_spec
from tailor.splits import load_split
from tailor.tokenizer import Codec
from tailor.train.batches import make_batches
from tailor.train.loop import real_tokens


def padding(run: Path, grouped: bool, epochs: int) -> tuple[float, int]:
    """(padding fraction, batch size) over `epochs` epochs of the run's training batches."""
    spec = load_spec(run / "spec.resolved.yaml")
    codec, model = Codec.load(run / "tokenizer"), load_model(run / "model")
    records = load_split(run / "data", "train")
    size = spec.train.batch_size
    batches = make_batches(records, codec, context_length(model), size, spec.train.seed, fields=spec.data.fields,
                           output=spec.problem.output, labels=labels_of(model), loss_on=spec.train.loss_on,
                           packing=spec.train.packing, group_by_length=grouped, seq2seq=is_seq2seq(model))
    tokens = positions = 0
    for step in range(batches.per_epoch * epochs):
        batch = batches(step)
        tokens, positions = tokens + real_tokens(batch), positions + batch["input_ids"].numel()
    return 1 - tokens / positions, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder (runs/<name>/<run-id>) whose train stage has its inputs")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    off, size = padding(args.run, False, args.epochs)
    on, _ = padding(args.run, True, args.epochs)
    print(f"{args.run}: padding in {args.epochs} epochs of batches of {size}: "
          f"{off:.1%} in random batches, {on:.1%} length-grouped")


if __name__ == "__main__":
    main()
