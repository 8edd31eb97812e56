"""Pre-labelling by a pretrained causal language model, for a person to review: each candidate label is
scored by its likelihood after a prompt holding the text, and the best one is suggested with its
probability among the candidates (zero-shot classification by likelihood)."""

from __future__ import annotations

from collections import Counter

from tailor.errors import TailorError

PROMPT = "Text: {text}\nPossible labels: {labels}\nThe label of this text is:"


class LabelModel:
    """Write the most likely label into `field` and its probability into `field`_score; counts suggestions."""

    name = "label_model"
    parallel = True

    def __init__(self, model: str, labels: list[str], fields: list[str], field: str, prompt: str = PROMPT,
                 max_chars: int = 2000):
        """fields: the text fields shown to the model; field: the record field the suggestion goes to."""
        text_fields = fields
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from tailor.presets import resolve_source

        folder, gguf = resolve_source(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
            self.model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf).eval()
        except OSError as e:
            raise TailorError(f"data.clean label_model.model: cannot load {model!r}: {e}") from None
        self.labels, self.text_fields, self.field, self.prompt, self.max_chars = labels, text_fields, field, prompt, max_chars
        self.label_ids = [self.tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]
        self.fields = [field]
        self.counts: Counter = Counter()

    def probabilities(self, text: str) -> list[float]:
        """P(label | prompt) for each candidate, normalised over the candidates."""
        import torch

        prompt = self.prompt.format(text=text[: self.max_chars], labels=", ".join(self.labels))
        head = self.tokenizer(prompt)["input_ids"]
        rows = [head + ids for ids in self.label_ids]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        with torch.no_grad():
            logp = self.model(input_ids=ids, attention_mask=mask).logits.log_softmax(-1)  # (L, T, V)
        totals = []
        for i, label in enumerate(self.label_ids):
            positions = torch.arange(len(head) - 1, len(head) - 1 + len(label))  # each label token's predictor
            totals.append(logp[i, positions, torch.tensor(label)].sum())
        return torch.stack(totals).softmax(0).tolist()

    def __call__(self, record: dict) -> dict | str:
        text = "\n".join(str(record.get(f) or "") for f in self.text_fields)
        probs = self.probabilities(text)
        best = max(range(len(probs)), key=probs.__getitem__)
        record[self.field] = self.labels[best]
        record[f"{self.field}_score"] = round(probs[best], 4)
        self.counts[f"suggested {self.labels[best]}"] += 1
        return record
