"""Batches for task heads: the input text's ids with a label, a score, or a label per word.

The label is read from `data.fields.output` and the text from `data.fields.input`. For
token labels the input is a list of words (or a string split on whitespace) and the output a
list of as many labels; each word's label goes on its first token, the others are not scored.
"""

from __future__ import annotations

import json

import torch
from tokenizers import Tokenizer

from tailor.artifacts import SOURCE_COLUMN
from tailor.errors import TailorError
from tailor.spec import Spec
from tailor.tokenizer import Codec

IGNORE = -100


def where(record: dict) -> str:
    return str(record.get(SOURCE_COLUMN) or "a record")


def parse_score(value, record: dict, field: str) -> float:
    """A record's score as a float; an error naming the record otherwise."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TailorError(f"{where(record)}: field {field!r} (data.fields.output) is {value!r}, "
                          "not a number; a score output needs numbers") from None


def as_list(value) -> list | None:
    """A list field: a list, or the JSON text the data stage stores lists as; None for anything else."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def words_of(value, record: dict, field: str) -> list[str]:
    """The words of a token-label input: a list of words, or a text split on whitespace."""
    words = as_list(value)
    if words is not None:
        return [str(w) for w in words]
    if isinstance(value, str):
        return value.split()
    raise TailorError(f"{where(record)}: field {field!r} should be a list of words or a text, got {type(value).__name__}")


class InputEncoder:
    """Input ids as task heads read them, truncated to block_size when given, with each token's word index.

    A pretrained encoder's tokenizer adds its own markers ([CLS] ... [SEP]); a Tailor tokenizer
    adds none, and the input then ends with the end-of-text token, so a head that reads the
    last position of a left-to-right model sees the whole text. Training, evaluation and the
    server's /v1/classify all encode inputs here.
    """

    def __init__(self, codec: Codec, block_size: int | None):
        tok = Tokenizer.from_str(codec.tokenizer.to_str())
        tok.encode_special_tokens = True
        self.append_eos = len(tok.encode("a", add_special_tokens=True).ids) == len(tok.encode("a", add_special_tokens=False).ids)
        if block_size is not None:
            tok.enable_truncation(max_length=block_size - (1 if self.append_eos else 0))
        self.tok, self.eos_id = tok, codec.eos_id

    def __call__(self, inputs: list, per_word: bool) -> tuple[list[list[int]], list[list[int | None]]]:
        """Ids and word indices of each input: a text, or (per_word) a list of words."""
        encodings = self.tok.encode_batch(inputs, is_pretokenized=per_word, add_special_tokens=True)
        end = [self.eos_id] if self.append_eos else []
        return [e.ids + end for e in encodings], [e.word_ids + ([None] if self.append_eos else []) for e in encodings]


def input_ids(spec: Spec, records: list[dict], codec: Codec,
              block_size: int | None) -> tuple[list[list[int]], list[list[int | None]]]:
    """Ids of each record's input (truncated to block_size when given) and each token's word index."""
    field = spec.data.fields.input
    per_word = spec.problem.output == "token-labels"
    inputs = [words_of(r[field], r, field) for r in records] if per_word else [r[field] for r in records]
    return InputEncoder(codec, block_size)(inputs, per_word)


def encode_labels(spec: Spec, records: list[dict], codec: Codec, block_size: int,
                  labels: list[str] | None) -> list[tuple[list[int], object]]:
    """(ids, target) per record: a label index, a float score, or a list of per-token label indices."""
    field, kind = spec.data.fields.output, spec.problem.output
    index = {label: i for i, label in enumerate(labels or [])}

    def label_id(value, record: dict) -> int:
        if str(value) not in index:
            raise TailorError(f"{where(record)}: label {value!r} in field {field!r} is not one of the model's "
                              f"{len(index)} labels ({', '.join(list(index)[:10])}{', ...' if len(index) > 10 else ''})")
        return index[str(value)]

    ids, word_ids = input_ids(spec, records, codec, block_size)
    out: list[tuple[list[int], object]] = []
    for r, seq, words in zip(records, ids, word_ids):
        if kind == "score":
            out.append((seq, parse_score(r.get(field), r, field)))
        elif kind == "label":
            out.append((seq, label_id(r.get(field), r)))
        else:
            tags = as_list(r.get(field))
            n_words = len(words_of(r[spec.data.fields.input], r, spec.data.fields.input))
            if tags is None or len(tags) != n_words:
                count = len(tags) if isinstance(tags, list) else "not a list of"
                raise TailorError(f"{where(r)}: {n_words} words in {spec.data.fields.input!r} but {count} labels "
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
