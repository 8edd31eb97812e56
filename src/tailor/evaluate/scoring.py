"""Per-example scoring: the negative log-likelihood of each example, and generated answers.

Every row of `evaluate/predictions.parquet` is one example of one split; each metric is an
aggregate of these rows (see tailor.evaluate.metrics), so intervals, comparisons and error
analysis all start from the same numbers.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from dataclasses import dataclass, field

from tailor.evaluate.metrics import count_words, generation_columns
from tailor.labels import IGNORE
from tailor.spec.data import Fields
from tailor.spec.evaluate import Generation, Latency

META = "meta."  # prefix of the record's own fields (metadata) in a prediction row


@dataclass(frozen=True)
class Reading:
    """How examples are scored and answered: what the model reads, which tokens are scored, how answers are
    generated and timed (the evaluate stage builds it from the spec fields it declares)."""

    fields: Fields                # data.fields
    output: str                   # problem.output
    loss_on: str = "output"       # train.loss_on
    batch_size: int = 32          # scoring batch: train.batch_size, or 32 when it is planned
    generation: Generation = field(default_factory=Generation)
    latency: Latency = field(default_factory=Latency)
    max_batch: int = 16           # deploy.serve.limits: the serving engine's batch and queue
    max_queue: int = 64

    @classmethod
    def of(cls, spec) -> Reading:
        """The reading the evaluate stage uses for a spec (for tools outside the pipeline, e.g. retraining)."""
        limits, train = spec.deploy.serve.limits, spec.train
        return cls(spec.data.fields, spec.problem.output, train.loss_on, train.eval_batch_size, spec.evaluate.generation,
                   spec.evaluate.latency, limits.max_batch, limits.max_queue)


def _nll_rows(model, batches, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(nll, scored) per evaluation batch, each (B, T): NLL in nats where a target is scored, else 0."""
    from tailor.models import compute_loss
    from tailor.train.loop import targets_of, to_device

    out = []
    model.eval()
    with torch.no_grad():
        for batch in batches.eval_batches(None):
            batch = to_device(batch, device)
            logits, _, _ = compute_loss(model, batch)
            targets = targets_of(batch)  # an encoder-decoder's answer ids are its labels
            nll = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
            out.append((nll.cpu().double(), (targets != IGNORE).cpu()))
    return out


def example_nll(gen, how: Reading, records: list[dict]) -> tuple[list[float], list[int]]:
    """Summed NLL (nats) and scored-token count of each record, over exactly the tokens the loss scores.

    A text corpus is scored as one stream in consecutive windows; each position's NLL goes to the
    document that holds the predicted token (the stream's very first token is never scored).
    """
    from tailor.models import context_length, is_seq2seq
    from tailor.train.batches import StreamBatches, make_batches

    batches = make_batches(records, gen.codec, context_length(gen.model), how.batch_size, 0, fields=how.fields,
                           output=how.output, loss_on=how.loss_on, seq2seq=is_seq2seq(gen.model))
    parts = _nll_rows(gen.model, batches, torch.device(gen.device))
    if not isinstance(batches, StreamBatches):  # examples (packed or not are scored unpacked), one row each
        nll = [float(v) for n, _ in parts for v in n.sum(1)]
        count = [int(v) for _, m in parts for v in m.sum(1)]
        return nll, count
    flat = torch.cat([n.reshape(-1)[m.reshape(-1)] for n, m in parts]).numpy()  # positions 1 .. L-1
    lengths = np.asarray([len(ids) + 1 for ids in gen.codec.encode_batch([r[how.fields.text] for r in records])])
    owner = np.repeat(np.arange(len(records)), lengths)[1:]  # the document of each predicted position
    return (np.bincount(owner, weights=flat, minlength=len(records)).tolist(),
            np.bincount(owner, minlength=len(records)).astype(int).tolist())


def _plain(value):
    """Metadata as Parquet can hold it in one column: strings and numbers as they are, the rest as JSON."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value, default=str)


def score_examples(gen, how: Reading, split: str, records: list[dict]) -> list[dict]:
    """One row per record: its text, NLL and the counts the language-modelling metrics divide by."""
    f = how.fields
    nll, tokens = example_nll(gen, how, records)
    if f.messages is not None:
        inputs, expected, scored, lengths = _chat_columns(gen.codec, how.loss_on, [r[f.messages] for r in records])
    else:
        pairs = f.text is None
        inputs = [r[f.input] for r in records] if pairs else [r[f.text] for r in records]
        expected = [r[f.output] for r in records] if pairs else [None] * len(records)
        scored = [(r[f.input] + " " + r[f.output] if how.loss_on == "all" else r[f.output]) if pairs else r[f.text]
                  for r in records]
        lengths = [len(ids) for ids in gen.codec.encode_batch(inputs)]
    rows = []
    for i, r in enumerate(records):
        rows.append({"split": split, "index": i, "input": inputs[i], "expected": expected[i],
                     "nll": nll[i], "tokens": tokens[i], "loss": nll[i] / tokens[i] if tokens[i] else None,
                     "bytes": len(scored[i].encode("utf-8")), "words": count_words(scored[i]),
                     "input_tokens": lengths[i], **{META + k: _plain(v) for k, v in r.items() if k not in f.used}})
    return rows


def _chat_columns(codec, loss_on: str, cells: list) -> tuple[list[str], list[str], list[str], list[int]]:
    """For conversations: the input (the turns before the last assistant turn, as JSON), the expected answer
    (that turn), the text the loss scores (the learnt turns) and the prompt's length in tokens."""
    from tailor.data.chat import conversation, last_turn
    from tailor.tokenizer.chat import learnt_roles

    inputs, expected, scored, lengths = [], [], [], []
    roles = learnt_roles(loss_on)
    for cell in cells:
        messages = conversation(cell)
        prompt, answer = last_turn(messages)
        inputs.append(json.dumps(prompt, ensure_ascii=False))
        expected.append(answer)
        learnt = [answer] if loss_on == "last" else [m["content"] for m in messages if m["role"] in roles]
        scored.append("\n".join(learnt))
        lengths.append(len(codec.chat(prompt)))
    return inputs, expected, scored, lengths


def answer_examples(gen, how: Reading, rows: list[dict], progress: Progress | None = None) -> dict:
    """Answer each row (in place) through the serving engine, as `tailor serve` would: prediction, correctness,
    latency and generation columns. Returns the settings the latency was measured with."""
    from tailor.inference.local import answer_in_process

    g, latency = how.generation, how.latency
    task = progress.add_task(f"answer {rows[0]['split']}", total=len(rows)) if progress and rows else None
    prompts = [json.loads(r["input"]) for r in rows] if how.fields.messages is not None else [r["input"] for r in rows]
    answers, settings = answer_in_process(
        gen.folder, prompts, g.max_new_tokens, g.temperature, g.top_p, g.seed, latency.concurrency,
        how.max_batch, how.max_queue, latency.warmup, gen.device,
        on_answer=(lambda: progress.advance(task)) if task is not None else None)
    for row, a in zip(rows, answers):
        row |= {"predicted": a.text, "correct": a.text.strip() == row["expected"].strip(),
                "latency_ms": a.latency_ms, "finish_reason": a.finish_reason}
    columns = generation_columns([r["predicted"] for r in rows], [r["expected"] for r in rows])
    for i, row in enumerate(rows):
        row |= {name: values[i] for name, values in columns.items()}
    return settings
