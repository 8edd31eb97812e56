"""Turning split records into token batches: prompt/answer pairs or a text stream."""

from __future__ import annotations

import torch

from tailor.labels import IGNORE
from tailor.spec.data import Fields
from tailor.tokenizer import Codec


def encode_pairs(inputs: list[str], outputs: list[str], codec: Codec, block_size: int,
                 loss_on: str = "output") -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per example: the prompt (input + sep, or the chat template's user turn), output, eos.

    Labels hide the prompt unless loss_on='all' ('last' is 'output': a pair has one answer).
    """
    out = []
    for a, b in zip(codec.encode_batch(inputs), codec.encode_batch(outputs)):
        answer = b + [codec.eos_id]
        room = block_size + 1 - len(answer) - codec.prompt_overhead
        a = a[-room:] if room > 0 else []  # too long: keep the end of the prompt, all of the answer
        prompt = codec.wrap_prompt(a)
        ids = prompt + answer
        labels = ids[:] if loss_on == "all" else [IGNORE] * len(prompt) + answer
        out.append((ids[: block_size + 1], labels[: block_size + 1]))
    return out


Batch = dict[str, torch.Tensor]  # input_ids (B, T); targets (B, T): the next token, or IGNORE; lengths (B,)
MEGABATCH = 50  # batches per length-sorted group, as HF's LengthGroupedSampler


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> Batch:
    """Right-padded input_ids (B, T), next-token targets (B, T) and each row's real length; padding is never scored."""
    T = max(len(ids) for ids, _ in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    for i, (ids, labels) in enumerate(examples):
        n = len(ids) - 1
        x[i, :n] = torch.tensor(ids[:-1])
        y[i, :n] = torch.tensor(labels[1:])
    return {"input_ids": x, "targets": y, "lengths": torch.tensor([len(ids) - 1 for ids, _ in examples])}


def length_grouped(order: list[int], lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """`order` regrouped so that each batch holds examples of similar length, as HF's LengthGroupedSampler.

    The shuffled examples are cut into megabatches of MEGABATCH batches, each sorted by length and cut
    into batches; the batches are then shuffled (seeded), so that the curve does not follow the lengths,
    and the one with the longest example goes first, so that a batch too large for memory fails at once.
    """
    batches = []
    for start in range(0, len(order), MEGABATCH * batch_size):
        mega = sorted(order[start:start + MEGABATCH * batch_size], key=lambda j: -lengths[j])
        batches += [mega[k:k + batch_size] for k in range(0, len(mega), batch_size)]
    shuffled = [batches[k] for k in torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed))]
    longest = max(range(len(shuffled)), key=lambda k: lengths[shuffled[k][0]])
    shuffled[0], shuffled[longest] = shuffled[longest], shuffled[0]
    return [j for batch in shuffled for j in batch]


class PairBatches:
    """Epochs of shuffled prompt/answer examples; batch `step` is a pure function of (seed, step).

    With group_by_length each batch holds examples of similar length (length_grouped), still a pure
    function of (seed, step), so a resumed run draws the same batches.
    """

    def __init__(self, examples: list[tuple[list[int], object]], batch_size: int, pad_id: int, seed: int,
                 collate_fn=collate, group_by_length: bool = False, lengths: list[int] | None = None):
        self.examples, self.batch_size, self.pad_id, self.seed = examples, batch_size, pad_id, seed
        self.collate_fn = collate_fn  # collate (next-token targets) or label_batches.collate_labels
        self.per_epoch = max(1, len(examples) // batch_size)
        self.group_by_length = group_by_length
        # tokens per example (a preference pair passes the longer of its two rows')
        self.lengths = lengths if lengths is not None else [len(e[0]) for e in examples]
        self._cached: tuple[int, list[int]] | None = None  # (epoch, order): the sort is paid once per epoch

    def order(self, epoch: int) -> list[int]:
        """The examples of `epoch` in batch order (the last, partial batch's are left out when grouping)."""
        if self._cached is None or self._cached[0] != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(self.examples), generator=g).tolist()
            if self.group_by_length:
                order = length_grouped(order[:self.per_epoch * self.batch_size], self.lengths, self.batch_size,
                                       self.seed * 1_000_003 + epoch)
            self._cached = (epoch, order)
        return self._cached[1]

    def __call__(self, step: int) -> Batch:
        epoch, i = divmod(step, self.per_epoch)
        picked = self.order(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        return self.collate_fn([self.examples[j] for j in picked], self.pad_id)

    def eval_batches(self, limit: int | None):
        """The first `limit` batches' examples (None: all) in file order, or by length when grouping (the same
        examples, less padding), for a repeatable validation loss."""
        count = len(self.examples) if limit is None else min(len(self.examples), limit * self.batch_size)
        chosen = list(range(count))
        if self.group_by_length:
            chosen.sort(key=lambda j: self.lengths[j])
        for start in range(0, count, self.batch_size):
            yield self.collate_fn([self.examples[j] for j in chosen[start:start + self.batch_size]], self.pad_id)


class PackedBatches:
    """Prompt/answer examples packed into rows of block_size tokens: no compute is spent on padding.

    Each epoch shuffles the examples (seeded) and fills rows greedily; `position_ids` restart at
    0 for every example so that attention stays within it. A step takes `rows` rows, so batch
    `step` is still a pure function of (seed, step). Validation uses the examples unpacked.
    """

    def __init__(self, examples: list[tuple[list[int], list[int]]], block_size: int, rows: int, pad_id: int, seed: int,
                 group_by_length: bool = False):
        self.unpacked = PairBatches(examples, rows, pad_id, seed, group_by_length=group_by_length)
        self.examples, self.block_size, self.rows, self.pad_id, self.seed = examples, block_size, rows, pad_id, seed
        self._epochs: list[list[list[int]]] = []  # rows (lists of example indices) of each epoch so far

    def _epoch(self, epoch: int) -> list[list[int]]:
        while len(self._epochs) <= epoch:
            e = len(self._epochs)
            order = torch.randperm(len(self.examples), generator=torch.Generator().manual_seed(self.seed + e)).tolist()
            packed, row, used = [], [], 0
            for j in order:
                n = len(self.examples[j][0]) - 1
                if row and used + n > self.block_size:
                    packed.append(row)
                    row, used = [], 0
                row.append(j)
                used += n
            packed.append(row)
            self._epochs.append(packed)
        return self._epochs[epoch]

    def __call__(self, step: int) -> Batch:
        epoch, i = 0, step
        while i >= (per := max(1, len(self._epoch(epoch)) // self.rows)):
            i -= per
            epoch += 1
        picked = self._epoch(epoch)[i * self.rows:(i + 1) * self.rows]
        T = max(sum(len(self.examples[j][0]) - 1 for j in row) for row in picked)
        x = torch.full((len(picked), T), self.pad_id, dtype=torch.long)
        y = torch.full((len(picked), T), IGNORE, dtype=torch.long)
        pos = torch.zeros((len(picked), T), dtype=torch.long)
        lengths = torch.tensor([sum(len(self.examples[j][0]) - 1 for j in row) for row in picked])
        for r, row in enumerate(picked):
            at = 0
            for j in row:
                ids, labels = self.examples[j]
                n = len(ids) - 1
                x[r, at:at + n] = torch.tensor(ids[:-1])
                y[r, at:at + n] = torch.tensor(labels[1:])
                pos[r, at:at + n] = torch.arange(n)
                at += n
        return {"input_ids": x, "targets": y, "position_ids": pos, "lengths": lengths}

    def eval_batches(self, limit: int | None):
        """Unpacked, as PairBatches: validation loss means the same with or without packing."""
        return self.unpacked.eval_batches(limit)


class StreamBatches:
    """Random windows of a token stream (documents joined by eos), nanoGPT-style."""

    def __init__(self, tokens: torch.Tensor, block_size: int, batch_size: int, seed: int):
        if len(tokens) < 2:
            raise ValueError("the token stream is too short to train on")
        self.tokens, self.batch_size, self.seed = tokens, batch_size, seed
        self.block_size = min(block_size, len(tokens) - 1)
        self.per_epoch = max(1, (len(tokens) - 1) // (self.block_size * batch_size))  # steps to see each token once

    def __call__(self, step: int) -> Batch:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = torch.randint(len(self.tokens) - self.block_size, (self.batch_size,), generator=g)
        x = torch.stack([self.tokens[s:s + self.block_size] for s in starts.tolist()])
        y = torch.stack([self.tokens[s + 1:s + 1 + self.block_size] for s in starts.tolist()])
        return {"input_ids": x, "targets": y}

    def eval_batches(self, limit: int | None):
        """Consecutive non-overlapping windows from the start; with no limit, the whole stream.

        Every token but the first is scored exactly once (the last window may be shorter).
        """
        T = self.block_size
        n_full = (len(self.tokens) - 1) // T
        rows = n_full if limit is None else min(n_full, limit * self.batch_size)
        for start in range(0, rows, self.batch_size):
            span = range(start, min(start + self.batch_size, rows))
            yield {"input_ids": torch.stack([self.tokens[r * T:(r + 1) * T] for r in span]),
                   "targets": torch.stack([self.tokens[r * T + 1:(r + 1) * T + 1] for r in span])}
        tail = n_full * T
        if limit is None and tail < len(self.tokens) - 1:
            yield {"input_ids": self.tokens[None, tail:-1], "targets": self.tokens[None, tail + 1:]}


def make_batches(records: list[dict], codec: Codec, block_size: int, batch_size: int, seed: int, *, fields: Fields,
                 output: str, labels: list[str] | None = None, loss_on: str = "output", packing: bool = False,
                 group_by_length: bool = False, seq2seq: bool = False):
    """PairBatches for input/output data and conversations (with a label, score or tags for task heads),
    StreamBatches for a corpus.

    fields, output: data.fields and problem.output; loss_on, packing, group_by_length: the train section's;
    seq2seq: the model is an encoder-decoder (tailor.train.seq2seq_batches), grouped by its encoder's length.
    A corpus is cut into full windows: it has no padding to group away.
    """
    f = fields
    if seq2seq:
        from tailor.train.seq2seq_batches import collate_seq2seq, seq2seq_examples

        return PairBatches(seq2seq_examples(records, f, codec, block_size, loss_on, packing), batch_size,
                           codec.pad_id, seed, collate_seq2seq, group_by_length)
    if output != "text":
        from tailor.train.label_batches import collate_labels, encode_labels

        return PairBatches(encode_labels(fields, output, records, codec, block_size, labels), batch_size, codec.pad_id,
                           seed, collate_labels, group_by_length)
    if f.text is not None:
        ids: list[int] = []
        for doc in codec.encode_batch([r[f.text] for r in records]):
            ids += doc + [codec.eos_id]
        return StreamBatches(torch.tensor(ids, dtype=torch.long), block_size, batch_size, seed)
    if f.messages is not None:
        from tailor.tokenizer.chat import encode_chats

        examples = encode_chats([r[f.messages] for r in records], codec, block_size, loss_on)
    else:
        examples = encode_pairs([r[f.input] for r in records], [r[f.output] for r in records], codec, block_size,
                                loss_on)
    if packing:
        return PackedBatches(examples, block_size, batch_size, codec.pad_id, seed, group_by_length)
    return PairBatches(examples, batch_size, codec.pad_id, seed, group_by_length=group_by_length)
