"""Batches for task heads: the input text's ids with a label, a score, or a label per word.

The label is read from `data.fields.output` and the text from `data.fields.input`. For
token labels the input is a list of words (or a string split on whitespace) and the output a
list of as many labels; each word's label goes on its first token, the others are not scored.
"""

from __future__ import annotations

import torch

from tailor.errors import TailorError
from tailor.labels import IGNORE, as_list, parse_score, where, words_of
from tailor.spec.data import Fields
from tailor.tokenizer import Codec
from tailor.tokenizer.inputs import input_ids


def encode_labels(fields: Fields, kind: str, records: list[dict], codec: Codec, block_size: int,
                  labels: list[str] | None) -> list[tuple[list[int], object]]:
    """(ids, target) per record: a label index, a float score, or a list of per-token label indices.

    fields: data.fields (the text is the input, the label the output); kind: problem.output.
    """
    field = fields.output
    index = {label: i for i, label in enumerate(labels or [])}

    def label_id(value, record: dict) -> int:
        if str(value) not in index:
            raise TailorError(f"{where(record)}: label {value!r} in field {field!r} is not one of the model's "
                              f"{len(index)} labels ({', '.join(list(index)[:10])}{', ...' if len(index) > 10 else ''})")
        return index[str(value)]

    ids, word_ids = input_ids(fields, kind, records, codec, block_size)
    out: list[tuple[list[int], object]] = []
    for r, seq, words in zip(records, ids, word_ids):
        if kind == "score":
            out.append((seq, parse_score(r.get(field), r, field)))
        elif kind == "label":
            out.append((seq, label_id(r.get(field), r)))
        else:
            tags = as_list(r.get(field))
            n_words = len(words_of(r[fields.input], r, fields.input))
            if tags is None or len(tags) != n_words:
                count = len(tags) if isinstance(tags, list) else "not a list of"
                raise TailorError(f"{where(r)}: {n_words} words in {fields.input!r} but {count} labels "
                                  f"in {field!r}; token labels need one label per word")
            target, previous = [], None
            for w in words:
                target.append(label_id(tags[w], r) if w is not None and w != previous else IGNORE)
                previous = w
            out.append((seq, target))
    return out


def collate_labels(examples: list[tuple[list[int], object]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids and attention_mask (B, T), and labels: (B,) or, per token, (B, T)."""
    T = max(len(ids) for ids, _ in examples)
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for i, (ids, _) in enumerate(examples):
        x[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[i, :len(ids)] = 1
    first = examples[0][1]
    if isinstance(first, list):
        y = torch.full((len(examples), T), IGNORE, dtype=torch.long)
        for i, (_, tags) in enumerate(examples):
            y[i, :len(tags)] = torch.tensor(tags, dtype=torch.long)
    else:
        y = torch.tensor([t for _, t in examples], dtype=torch.float if isinstance(first, float) else torch.long)
    return {"input_ids": x, "attention_mask": mask, "labels": y}
