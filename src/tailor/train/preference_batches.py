"""Preference pairs as batches: each prompt with its preferred and its rejected answer, side by side.

The layout (input_ids and targets (B, 2, T)) is tailor.models.preference's; epochs, shuffling and the
validation order are PairBatches', so batch `step` is a pure function of (seed, step) and a resumed run
repeats the same pairs.
"""

from __future__ import annotations

from functools import partial

import torch

from tailor.errors import TailorError
from tailor.labels import IGNORE, where
from tailor.spec.data import Fields
from tailor.tokenizer import Codec
from tailor.train.batches import PairBatches, encode_pairs

Example = tuple[tuple[list[int], list[int]], tuple[list[int], list[int]], list[int]]


def encode_preferences(records: list[dict], fields: Fields, codec: Codec, block_size: int,
                       loss_on: str = "output") -> list[Example]:
    """(preferred (ids, labels), rejected (ids, labels), preferred likelihood labels) per record.

    The labels score the answer only; the likelihood labels (ORPO's NLL term) follow train.loss_on.
    """
    for r in records:
        for role, name in (("input", fields.input), ("output", fields.output), ("rejected", fields.rejected)):
            if not isinstance(r.get(name), str):
                raise TailorError(f"{where(r)}: data.fields.{role} {name!r} is {r.get(name)!r}; a preference pair needs "
                                  "text in the prompt, the preferred and the rejected answer")
    prompts = [r[fields.input] for r in records]
    chosen = encode_pairs(prompts, [r[fields.output] for r in records], codec, block_size)
    rejected = encode_pairs(prompts, [r[fields.rejected] for r in records], codec, block_size)
    return [(c, j, c[0] if loss_on == "all" else c[1]) for c, j in zip(chosen, rejected)]


def collate_preferences(examples: list[Example], pad_id: int, nll: bool = False) -> dict[str, torch.Tensor]:
    """input_ids and next-token targets (B, 2, T), right-padded; with `nll`, the preferred rows' nll_targets (B, T)."""
    T = max(len(ids) for c, j, _ in examples for ids in (c[0], j[0])) - 1
    x = torch.full((len(examples), 2, T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), 2, T), IGNORE, dtype=torch.long)
    z = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for i, (c, j, nll_labels) in enumerate(examples):
        for k, (ids, labels) in enumerate((c, j)):
            n = len(ids) - 1
            x[i, k, :n] = torch.tensor(ids[:-1])
            y[i, k, :n] = torch.tensor(labels[1:])
        z[i, :len(nll_labels) - 1] = torch.tensor(nll_labels[1:])
    batch = {"input_ids": x, "targets": y}
    if nll:
        batch["nll_targets"] = z
    return batch


def preference_batches(records: list[dict], fields: Fields, codec: Codec, block_size: int, batch_size: int,
                       seed: int, loss_on: str = "output", group_by_length: bool = False) -> PairBatches:
    """Shuffled epochs of preference pairs (PairBatches with the pair collation), grouped by the longer row."""
    examples = encode_preferences(records, fields, codec, block_size, loss_on)
    return PairBatches(examples, batch_size, codec.pad_id, seed, partial(collate_preferences, nll=loss_on == "all"),
                       group_by_length, [max(len(c[0]), len(j[0])) for c, j, _ in examples])
