"""Prediction rows of task heads (labels, token labels, scores), in the evaluate stage's row format.

Each row carries what the shared metrics aggregate: `nll` and `tokens` (loss), `label_true` and
`label_pred` (label indices of the model: accuracy, precision, recall, F1), `exact` (right or
wrong, so slices show accuracy), or `score_true` and `score_pred` (squared and absolute error,
R², Pearson). A token-label problem gives one row per word, so its numbers are per word.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tailor.evaluate.scoring import META, Reading, _plain
from tailor.labels import IGNORE


@torch.no_grad()
def _outputs(model, codec, how: Reading, records: list[dict], device: torch.device):
    """Per batch: (logits, labels) on the CPU, in record order."""
    from tailor.models import compute_loss, context_length, labels_of
    from tailor.train.batches import make_batches
    from tailor.train.loop import to_device

    batches = make_batches(records, codec, context_length(model), how.batch_size, 0, fields=how.fields,
                           output=how.output, labels=labels_of(model))
    model.eval()
    for batch in batches.eval_batches(None):
        logits, _, _ = compute_loss(model, to_device(batch, device))
        yield logits.float().cpu(), batch["labels"]


def label_rows(model, codec, how: Reading, split: str, records: list[dict], device: torch.device) -> list[dict]:
    """One prediction row per record (per word for token labels)."""
    from tailor.models import labels_of
    from tailor.labels import words_of

    f = how.fields
    labels = labels_of(model) or []
    kind = how.output
    rows: list[dict] = []
    i = 0
    for logits, gold in _outputs(model, codec, how, records, device):
        for b in range(logits.shape[0]):
            r = records[i]
            meta = {META + k: _plain(v) for k, v in r.items() if k not in f.used}
            base = {"split": split, "index": i, **meta}
            if kind == "score":
                pred, true = float(logits[b, 0]), float(gold[b])
                rows.append({**base, "input": r[f.input], "expected": str(r[f.output]), "score_true": true,
                             "score_pred": pred, "nll": (pred - true) ** 2, "tokens": 1, "loss": (pred - true) ** 2,
                             "input_tokens": len(codec.encode(r[f.input]))})
            elif kind == "label":
                rows.append(_label_row(base, r[f.input], logits[b], int(gold[b]), labels, codec))
            else:
                scored = gold[b] != IGNORE
                words = words_of(r[f.input], r, f.input)
                for w, (word_logits, tag) in enumerate(zip(logits[b][scored], gold[b][scored].tolist())):
                    rows.append(_label_row({**base, "word": w}, str(words[w]), word_logits, tag, labels, codec))
            i += 1
    return rows


def _label_row(base: dict, text: str, logits: torch.Tensor, gold: int, labels: list[str], codec) -> dict:
    probs = logits.softmax(-1)
    pred = int(probs.argmax())
    nll = float(F.cross_entropy(logits[None], torch.tensor([gold])))
    return {**base, "input": text, "expected": labels[gold], "predicted": labels[pred], "correct": pred == gold,
            "exact": float(pred == gold), "confidence": float(probs[pred]), "label_true": float(gold),
            "label_pred": float(pred), "nll": nll, "tokens": 1, "loss": nll, "input_tokens": len(codec.encode(text))}
