"""Studies in and out: Label Studio (tasks + labeling config out, its JSON export in) and CSV.

Both formats show the responses as A and B exactly as the served page does; importing maps the
sides back to runs through each item's stored coin, so the raters stay blind everywhere.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from xml.sax.saxutils import quoteattr

from tailor.errors import TailorError
from tailor.evaluate.human.store import Study, from_shown, get_study, items, save_ratings, shown_questions


def _task_data(study: Study, item) -> dict:
    data = {"item": item.id, "prompt": item.prompt, "reference": item.reference or ""}
    if study.kind == "rate":
        return data | {"response": item.shown_a}
    return data | {"response_A": item.shown_a, "response_B": item.shown_b}


def labeling_config(study: Study) -> str:
    """The Label Studio labeling config (XML) matching the exported tasks."""
    parts = ["<View>", '  <Header value="Prompt"/>', '  <Text name="prompt" value="$prompt"/>',
             '  <Header value="Reference answer"/>', '  <Text name="reference" value="$reference"/>']
    sides = [("response", "")] if study.kind == "rate" else [("response_A", "_A"), ("response_B", "_B")]
    for field, suffix in sides:
        title = "Response" if not suffix else f"Response {suffix[1:]}"
        parts += [f"  <Header value={quoteattr(title)}/>", f'  <Text name="{field}" value="${field}"/>']
        for c in study.criteria:
            parts.append(f'  <Header value={quoteattr(f"{c} ({title}), 1-5")}/>')
            parts.append(f'  <Rating name="{c}{suffix}" toName="{field}" maxRating="5" required="true"/>')
    if study.winner:
        parts += ['  <Header value="Which response is better?"/>',
                  '  <Choices name="winner" toName="prompt" choice="single" required="true">',
                  '    <Choice value="A"/>', '    <Choice value="B"/>', '    <Choice value="tie"/>', "  </Choices>"]
    return "\n".join(parts + ["</View>"]) + "\n"


def export_labelstudio(con: sqlite3.Connection, name: str, out: Path) -> tuple[Path, Path]:
    """Write the tasks (JSON) and, beside them, the labeling config (.xml); returns both paths."""
    study = get_study(con, name)
    tasks = [{"data": _task_data(study, i)} for i in items(con, name)]
    out = Path(out)
    out.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    config = out.with_suffix(".xml")
    config.write_text(labeling_config(study), encoding="utf-8")
    return out, config


def _rater(completed_by) -> str:
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("id")
    return f"labelstudio:{completed_by}"


def _value(result: dict, where: str) -> str:
    value = result.get("value") or {}
    if result.get("type") == "rating" and "rating" in value:
        return str(value["rating"])
    if result.get("type") == "choices" and value.get("choices"):
        return str(value["choices"][0])
    raise TailorError(f"{where}: result of type {result.get('type')!r} has no rating or choice")


def import_labelstudio(con: sqlite3.Connection, name: str, path: Path) -> dict[str, int]:
    """Read a Label Studio JSON export of the exported tasks; returns counts of what was stored and skipped."""
    study = get_study(con, name)
    try:
        tasks = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TailorError(f"{path}: not a Label Studio JSON export ({e})") from None
    if not isinstance(tasks, list):
        raise TailorError(f"{path}: expected a JSON list of tasks")
    known = {i.id: i for i in items(con, name)}
    stored = cancelled = 0
    for t, task in enumerate(tasks):
        item_id = (task.get("data") or {}).get("item")
        if item_id not in known:
            raise TailorError(f"{path}: task {t}: data.item {item_id!r} is not an item of study {name!r}")
        for a, ann in enumerate(task.get("annotations") or []):
            where = f"{path}: task {t} annotation {a}"
            if ann.get("was_cancelled"):
                cancelled += 1
                continue
            answers = {r["from_name"]: _value(r, where) for r in ann.get("result") or [] if "from_name" in r}
            stored += save_ratings(con, study, item_id, _rater(ann.get("completed_by")),
                                   from_shown(study, known[item_id], answers), "labelstudio", where)
    return {"ratings": stored, "cancelled_annotations": cancelled}


CSV_FIXED = ("item", "prompt", "reference", "response_A", "response_B", "rater")


def export_csv(con: sqlite3.Connection, name: str, out: Path) -> Path:
    """One row per item with empty rater and answer columns, to fill in a spreadsheet."""
    study = get_study(con, name)
    fixed = [c for c in CSV_FIXED if study.kind == "ab" or c != "response_B"]
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fixed + shown_questions(study))
        for i in items(con, name):
            values = {"item": i.id, "prompt": i.prompt, "reference": i.reference or "", "response_A": i.shown_a,
                      "response_B": i.shown_b or "", "rater": ""}
            writer.writerow([values[c] for c in fixed] + [""] * len(shown_questions(study)))
    return Path(out)


def import_csv(con: sqlite3.Connection, name: str, path: Path) -> dict[str, int]:
    """Read a filled-in CSV; a row with no answers is skipped (and counted), a partly filled one is an error."""
    study = get_study(con, name)
    known = {i.id: i for i in items(con, name)}
    questions = shown_questions(study)
    stored = blank = 0
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("item", "rater", *questions) if c not in (reader.fieldnames or [])]
        if missing:
            raise TailorError(f"{path}: missing column(s) {', '.join(missing)}; export a template with "
                              f"`tailor human export {name} --format csv`")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            answers = {q: row[q] for q in questions if (row[q] or "").strip()}
            if not answers:
                blank += 1
                continue
            if len(answers) < len(questions):
                raise TailorError(f"{where}: answer every question ({', '.join(questions)}) or none")
            try:
                item = known[int(row["item"])]
            except (KeyError, ValueError):
                raise TailorError(f"{where}: item {row['item']!r} is not an item of study {name!r}") from None
            stored += save_ratings(con, study, item.id, row["rater"] or "", from_shown(study, item, answers), "csv",
                                   where)
    return {"ratings": stored, "blank_rows": blank}
