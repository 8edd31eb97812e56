"""Task-head models behind /v1/classify: labels with probabilities, a label per word, or a score.

Any head a run produces (our transformer or recurrent networks, or a transformers encoder) loads
here. Inputs are encoded exactly as training and evaluation encode them, and a batch is padded
the way the evaluate stage pads it, so a served answer is the evaluation's prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tailor.errors import TailorError
from tailor.inference import PromptFormat

OUTPUTS = {"classification": "label", "token_classification": "token-labels", "regression": "score"}


@dataclass
class Encoded:
    """An input ready for the model: its ids, and for token labels its words and each word's first token."""

    ids: list[int]
    words: list[str] | None = None
    first_tokens: list[int | None] | None = None  # None: the tokenizer gave the word no token


class ClassifierBackend:
    """A model with a task head, its tokenizer and labels; `classify(rows)` gives each row's logits."""

    kind, generates = "classifier", False

    def __init__(self, folder: Path, device: str = "cpu"):
        from tailor.models import context_length, head_of, labels_of, load_model
        from tailor.tokenizer.inputs import InputEncoder

        self.folder = Path(folder)
        self.format = PromptFormat(self.folder)  # the card and tokenizer; tokens_of feeds the drift monitor
        self.model = load_model(self.folder, device).eval()
        self.device = device
        self.head = head_of(self.model)
        self.output = OUTPUTS[self.head]
        self.labels = labels_of(self.model) or []
        self.block_size = context_length(self.model)
        self.encoder = InputEncoder(self.format.codec, None)  # not truncated: a long input is refused, not cut
        self.eos_ids, self.pad_id, self.name = set(), self.format.pad_id, self.format.name

    def encode(self, text: str) -> Encoded:
        """A text as the head reads it; for token labels its words are the text split on whitespace."""
        if self.output != "token-labels":
            return Encoded(self.encoder([text], per_word=False)[0][0])
        words = text.split()
        (ids,), (word_ids,) = self.encoder([words], per_word=True)
        first = [word_ids.index(w) if w in word_ids else None for w in range(len(words))]
        return Encoded(ids, words, first)

    @torch.no_grad()
    def classify(self, rows: list[list[int]]) -> list[torch.Tensor]:
        """Logits of each row: (labels,), (1,) for a score, or (tokens, labels) for token labels."""
        from tailor.models import logits_of
        from tailor.train.label_batches import collate_labels

        batch = collate_labels([(ids, 0) for ids in rows], self.pad_id)  # right-padded, as evaluated
        logits = logits_of(self.model, {"input_ids": batch["input_ids"].to(self.device),
                                        "attention_mask": batch["attention_mask"].to(self.device)}).float().cpu()
        if self.output == "token-labels":
            return [logits[i, :len(ids)] for i, ids in enumerate(rows)]
        return list(logits)

    def _ranked(self, logits: torch.Tensor, top_k: int) -> dict:
        probs = logits.softmax(-1)
        top = probs.topk(min(top_k, len(self.labels)))
        ranked = [{"label": self.labels[i], "probability": float(p)} for p, i in zip(top.values, top.indices)]
        return {"label": ranked[0]["label"], "probability": ranked[0]["probability"], "labels": ranked}

    def describe(self, encoded: Encoded, logits: torch.Tensor, top_k: int) -> dict:
        """The answer for one input: its label (with the top_k labels), each word's label, or its score."""
        if self.output == "score":
            return {"value": float(logits[0])}
        if self.output == "label":
            return self._ranked(logits, top_k)
        return {"words": [{"word": w, **(self._ranked(logits[t], top_k) if t is not None else
                                         {"label": None, "probability": None, "labels": []})}
                          for w, t in zip(encoded.words, encoded.first_tokens)]}

    def check_correction(self, correction: str, text: str) -> None:
        """A correction that retraining can learn from: a known label, a number, or one known label per word."""
        from tailor.labels import as_list

        known = set(self.labels)
        if self.output == "score":
            try:
                float(correction)
            except ValueError:
                raise TailorError(f"correction: {correction!r} is not a number; this model predicts a score") from None
        elif self.output == "label" and correction not in known:
            raise TailorError(f"correction: {correction!r} is not one of the model's labels ({', '.join(self.labels)})")
        elif self.output == "token-labels":
            tags, n_words = as_list(correction), len(text.split())
            if tags is None or len(tags) != n_words or not set(map(str, tags)) <= known:
                raise TailorError(f"correction: a JSON list of {n_words} labels (one per word), each one of "
                                  f"{', '.join(self.labels)}")
