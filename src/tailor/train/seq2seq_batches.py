"""Batches for encoder-decoder models (T5, BART): the input for the encoder, the answer as the decoder's labels.

The encoder reads the input exactly as a decoder-only model's prompt is built (`Codec.wrap_prompt`:
the input and the separator, or the chat template's user turn), so the serving engine's prompt is
the training input; the labels are the answer and eos, padded with IGNORE. The decoder's inputs
are the labels shifted right by the model itself (see tailor.models.compute_loss).
"""

from __future__ import annotations

import torch

from tailor.errors import TailorError
from tailor.labels import IGNORE
from tailor.models.pretrained import require_pairs
from tailor.spec.data import Fields
from tailor.tokenizer import Codec


def encode_seq2seq(inputs: list[str], outputs: list[str], codec: Codec, block_size: int) -> list[tuple[list[int], list[int]]]:
    """(encoder ids, answer ids + eos) per example, each at most block_size (the end of a long input is kept)."""
    out = []
    for a, b in zip(codec.encode_batch(inputs), codec.encode_batch(outputs)):
        room = max(block_size - codec.prompt_overhead, 0)
        out.append((codec.wrap_prompt(a[-room:] if room else []), (b + [codec.eos_id])[:block_size]))
    return out


def collate_seq2seq(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids and attention_mask (B, S), and labels (B, T) with IGNORE on padding."""
    S = max(len(ids) for ids, _ in examples)
    T = max(len(labels) for _, labels in examples)
    x = torch.full((len(examples), S), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), S), dtype=torch.long)
    y = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for i, (ids, labels) in enumerate(examples):
        x[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[i, :len(ids)] = 1
        y[i, :len(labels)] = torch.tensor(labels, dtype=torch.long)
    return {"input_ids": x, "attention_mask": mask, "labels": y}


def seq2seq_examples(records: list[dict], fields: Fields, codec: Codec, block_size: int, loss_on: str,
                     packing: bool) -> list[tuple[list[int], list[int]]]:
    """The examples of input/output records; an error naming the setting an encoder-decoder cannot follow."""
    require_pairs(fields)
    if packing:
        raise TailorError("train.packing: an encoder-decoder model is not packed (its encoder and decoder rows "
                          "would need two block-diagonal masks); set train.packing: false")
    if loss_on == "all":
        raise TailorError("train.loss_on: all: an encoder-decoder model scores only the answer (the input is "
                          "encoded, not generated); use loss_on: output")
    return encode_seq2seq([r[fields.input] for r in records], [r[fields.output] for r in records], codec, block_size)
