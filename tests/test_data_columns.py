"""Tailor's own columns never meet a user's fields, and the Label Studio tasks come with a matching config."""

import json
import xml.etree.ElementTree as ET

import pandas as pd
import pyarrow.parquet as pq

from test_data import run, spec_for

from tailor.splits import load_split

TICKETS = [{"body": f"ticket {i}: my parcel is late", "intent": "shipping" if i % 2 else "refund",
            "source": "email" if i % 3 else "phone"} for i in range(12)]


def _tickets(tmp_path, extra="  split: {train: 0.5, validation: 0.25, test: 0.25, seed: 0}\n"):
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TICKETS))
    spec = spec_for(tmp_path, "[{type: files, path: t.jsonl, map: {text: body}}]", "{input: text, output: intent}",
                    extra)
    return run(tmp_path, spec)


def test_a_user_field_named_source_stays_theirs_and_every_split_reads_with_pandas(tmp_path):
    _, out = _tickets(tmp_path)
    rows = []
    for split in ("train", "validation", "test"):
        frame = pd.read_parquet(out / f"{split}.parquet")  # two columns of one name made this raise
        assert list(frame.columns).count("source") == 1 and "_tailor_source" in frame.columns
        rows += frame.to_dict("records")
        assert pq.read_schema(out / f"{split}.parquet").names.count("source") == 1
    assert len(rows) == len(TICKETS)
    by_text = {r["text"]: r for r in rows}
    for t in TICKETS:
        got = by_text[t["body"]]
        assert got["source"] == t["source"] and got["_tailor_source"].startswith(str(tmp_path / "t.jsonl") + ":")
    assert {r["source"] for r in load_split(out, "train")} <= {"email", "phone"}


def test_label_studio_tasks_come_with_a_labeling_config_that_matches_them(tmp_path):
    _, out = _tickets(tmp_path, "  label_studio: true\n  split: {train: 1, validation: 0, test: 0}\n")
    tasks = json.loads((out / "label_studio.json").read_text())
    config = ET.fromstring((out / "label_studio_config.xml").read_text())
    text = config.find("Text")
    choices = config.find("Choices")
    assert text.get("value") == "$text" and choices.get("toName") == text.get("name")
    offered = {c.get("value") for c in choices.findall("Choice")}
    assert offered == {"shipping", "refund"}
    for task in tasks:
        result = task["predictions"][0]["result"][0]
        assert result["from_name"] == choices.get("name") and result["to_name"] == text.get("name")
        assert set(result["value"]["choices"]) <= offered
        assert task["data"]["source"] in ("email", "phone") and "_tailor_source" in task["data"]
        assert "intent" not in task["data"]
