"""Rule-based labeling functions: each rule votes for a label; the majority wins; ties abstain.
Coverage, overlap and conflict are counted as in weak-supervision tools (Snorkel's LF summary)."""

from __future__ import annotations

import re
from collections import Counter


class LabelRules:
    """Label records by the majority vote of regex/keyword rules; counts per rule and overall."""

    name = "label_rules"
    parallel = True

    def __init__(self, rules: list[dict], fields: list[str], field: str, overwrite: bool = False,
                 drop_unlabelled: bool = False):
        """fields: the text fields the rules read; field: the record field the label goes to."""
        self.field, self.text_fields, self.overwrite, self.drop_unlabelled = field, fields, overwrite, drop_unlabelled
        self.fields = [field]
        self.rules = []
        for i, rule in enumerate(rules):
            parts = [rule["pattern"]] if rule.get("pattern") else []
            parts += [rf"\b{re.escape(k)}\b" for k in rule.get("keywords") or []]
            self.rules.append((rule.get("name") or f"rule{i}:{rule['label']}", rule["label"],
                               re.compile("|".join(parts), re.IGNORECASE)))
        self.counts: Counter = Counter()

    def __call__(self, record: dict) -> dict | str:
        if record.get(self.field) not in (None, "") and not self.overwrite:
            self.counts["already labelled"] += 1
            return record
        text = "\n".join(str(record.get(f) or "") for f in self.text_fields)
        votes = [(name, label) for name, label, pattern in self.rules if pattern.search(text)]
        self.counts["seen"] += 1
        for name, _ in votes:
            self.counts[f"fired: {name}"] += 1
        labels = Counter(label for _, label in votes)
        if votes:
            self.counts["covered"] += 1
        if len(votes) > 1:
            self.counts["overlap"] += 1
        if len(labels) > 1:
            self.counts["conflict"] += 1
        top = labels.most_common(2)
        if not top or (len(top) == 2 and top[0][1] == top[1][1]):
            self.counts["abstained"] += 1
            return "no rule label" if self.drop_unlabelled else record
        record[self.field] = top[0][0]
        self.counts["labelled"] += 1
        return record


def rule_summary(counts: dict) -> dict:
    """Coverage, overlap and conflict as shares of the records the rules saw."""
    seen = counts.get("seen", 0) or 1
    return {k: round(counts.get(k, 0) / seen, 4) for k in ("covered", "overlap", "conflict")}
