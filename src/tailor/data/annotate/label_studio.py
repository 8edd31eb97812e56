"""Tasks in Label Studio's import format: each record's data, and its current label as a prediction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path


def write_tasks(records: Iterable[dict], path: Path, label_field: str | None, from_name: str = "label",
                to_name: str = "text") -> int:
    """Write records as a JSON list of tasks; labels become pre-annotations to review. Returns the count."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for record in records:
            data = {k: v for k, v in record.items() if k != label_field}
            task: dict = {"data": data}
            label = record.get(label_field) if label_field else None
            if label not in (None, ""):
                task["predictions"] = [{"model_version": "tailor", "result": [
                    {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [str(label)]}}]}]
            f.write(("," if n else "") + "\n" + json.dumps(task, ensure_ascii=False, default=str))
            n += 1
        f.write("\n]\n")
    return n
