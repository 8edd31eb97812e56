"""Tasks in Label Studio's import format: each record's data, and its current label as a prediction; and the
labeling config (XML) whose tag names match the tasks' `from_name`/`to_name`, so both import as they are."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import quoteattr

from tailor.artifacts import atomic_write_text

CONFIG = "label_studio_config.xml"  # written beside the tasks


def write_tasks(records: Iterable[dict], path: Path, label_field: str | None, suggestion_field: str | None = None,
                from_name: str = "label", to_name: str = "text", text_field: str | None = None,
                choices: Iterable[str] = ()) -> int:
    """Write records as a JSON list of tasks; their label (or a model's suggestion, with its score) becomes a
    pre-annotation to review. With text_field, also write the labeling config beside them, offering `choices`
    and every label a task shows. Returns the count."""
    n = 0
    hidden = {label_field, suggestion_field, f"{suggestion_field}_score"}
    labels = dict.fromkeys(choices)  # in order: the declared ones, then as they first appear
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for record in records:
            data = {k: v for k, v in record.items() if k not in hidden}
            task: dict = {"data": data}
            label = record.get(label_field) if label_field else None
            if label not in (None, ""):
                labels[str(label)] = None
            score = None
            if label in (None, "") and suggestion_field:
                label, score = record.get(suggestion_field), record.get(f"{suggestion_field}_score")
            if label not in (None, ""):
                labels[str(label)] = None
                task["predictions"] = [{"model_version": "tailor", **({"score": score} if score is not None else {}),
                                        "result": [{"from_name": from_name, "to_name": to_name, "type": "choices",
                                                    "value": {"choices": [str(label)]}}]}]
            f.write(("," if n else "") + "\n" + json.dumps(task, ensure_ascii=False, default=str))
            n += 1
        f.write("\n]\n")
    if text_field is not None:
        atomic_write_text(Path(path).with_name(CONFIG), label_config(list(labels), text_field, from_name, to_name))
    return n


def label_config(labels: list[str], text_field: str, from_name: str = "label", to_name: str = "text") -> str:
    """A Label Studio labeling config: the task's text_field shown as `to_name`, one choice per label as `from_name`."""
    choices = "".join(f"\n    <Choice value={quoteattr(label)}/>" for label in labels)
    return (f"<View>\n  <Text name={quoteattr(to_name)} value={quoteattr('$' + text_field)}/>\n"
            f"  <Choices name={quoteattr(from_name)} toName={quoteattr(to_name)} choice=\"single\" "
            f"showInLine=\"true\">{choices}\n  </Choices>\n</View>\n")
