import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailor.data import load_split, run_data
from tailor.data.clean.normalize import Normalize
from tailor.data.split import assign_splits
from tailor.errors import TailorError
from tailor.spec import parse_spec
from tailor.spec.data import Split


def spec_for(tmp_path, sources: str, fields: str = "{text: text}", extra: str = ""):
    text = f"""name: d
problem: {{domain: d, task: t}}
data:
  sources: {sources}
  fields: {fields}
{extra}"""
    return parse_spec(text, "s.yaml", tmp_path)


def run(tmp_path, spec):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return run_data(spec, out), out


def test_all_formats_and_globs_load_and_counts_reconcile(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_text("First para\nline two\n\nSecond  para\n\n\nThird\n")
    (tmp_path / "a" / "two.jsonl").write_text('{"text": "from jsonl"}\n\n{"text": "Third"}\n')
    (tmp_path / "a" / "three.csv").write_text("text,other\nfrom csv,1\n\"quoted, comma\",2\n")
    (tmp_path / "a" / "four.tsv").write_text("text\tx\nfrom tsv\t1\n")
    pq.write_table(pa.table({"text": ["from parquet", "  ", "First para\nline two"]}), tmp_path / "a" / "five.parquet")
    report, out = run(tmp_path, spec_for(tmp_path, "[{type: files, path: a}]"))
    assert report["loaded"] == 3 + 2 + 2 + 1 + 3
    assert report["loaded"] == report["kept"] + report["dropped"]
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["normalize"]["dropped"] == {"empty text": 1}
    assert steps["normalize"]["modified"] == 1            # "Second  para" -> "Second para"
    assert steps["dedup"]["dropped"] == {"exact duplicate": 2}  # "Third", "First para\nline two"
    texts = sorted(r["text"] for s in ("train", "validation", "test") for r in load_split(out, s))
    assert "quoted, comma" in texts and "Second para" in texts and len(texts) == report["kept"]
    assert sum(report["splits"].values()) == report["kept"]
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert len(dropped) == report["dropped"] and {d["step"] for d in dropped} == {"normalize", "dedup"}
    assert all(d["record"]["_source"] for d in dropped)


def test_txt_units(tmp_path):
    (tmp_path / "c.txt").write_text("a\nb\n\nc\n")
    for unit, n in (("file", 1), ("paragraph", 2), ("line", 3)):
        report, _ = run(tmp_path, spec_for(tmp_path, f"[{{type: files, path: c.txt, unit: {unit}}}]",
                                           extra="  clean: []\n  split: {train: 1.0, validation: 0, test: 0}\n"))
        assert report["loaded"] == n, unit


def test_malformed_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": "broken\n')
    with pytest.raises(TailorError, match=r"bad\.jsonl:2: not valid JSON"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: bad.jsonl}]"))


def test_missing_field_names_file_line_and_keys(tmp_path):
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "answer": "a"}\n{"question": "q2", "reply": "a"}\n')
    with pytest.raises(TailorError, match=r"qa\.jsonl:2: missing field 'answer'.*the record has: question, reply"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: qa.jsonl}]", "{input: question, output: answer}"))


def test_csv_missing_column(tmp_path):
    (tmp_path / "t.csv").write_text("body\nhello\n")
    with pytest.raises(TailorError, match=r"t\.csv:1: the header has no column 'text' \(mapped in the spec\); its columns: body"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: t.csv}]"))


def test_no_matching_files(tmp_path):
    with pytest.raises(TailorError, match=r"data\.sources\[0\]\.path: no files match"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: 'nothing/*.jsonl'}]"))


def test_empty_corpus(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(TailorError, match="holds no records"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: e.jsonl}]"))
    (tmp_path / "blank.jsonl").write_text('{"text": "  "}\n')
    with pytest.raises(TailorError, match="no records left after cleaning"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: blank.jsonl}]"))


def test_undecodable_bytes(tmp_path):
    (tmp_path / "x.txt").write_bytes(b"fine\nbad \xff byte\n")
    with pytest.raises(TailorError, match=r"x\.txt:2: byte 4 of the line is not valid UTF-8"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: x.txt}]"))


def test_unknown_extension(tmp_path):
    (tmp_path / "x.dat").write_text("a")
    with pytest.raises(TailorError, match="set data.sources\\[0\\].format"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: x.dat}]"))


def test_split_is_deterministic_and_respects_pins():
    records = [{"text": str(i)} for i in range(100)] + [{"text": f"t{i}", "_split": "test"} for i in range(5)]
    split = Split(train=0.8, validation=0.2, test=0.0, seed=3)
    a = assign_splits([dict(r) for r in records], split)
    b = assign_splits([dict(r) for r in records], split)
    assert a == b
    assert len(a["train"]) == 80 and len(a["validation"]) == 20 and len(a["test"]) == 5
    assert all(r["text"].startswith("t") for r in a["test"])
    c = assign_splits([dict(r) for r in records], Split(train=0.8, validation=0.2, test=0.0, seed=4))
    assert c["validation"] != a["validation"]


def test_contiguous_split_keeps_file_order():
    records = [{"text": str(i)} for i in range(10)]
    out = assign_splits(records, Split(train=0.8, validation=0.1, test=0.1, shuffle=False))
    assert [r["text"] for r in out["train"]] == [str(i) for i in range(8)]
    assert out["validation"][0]["text"] == "8" and out["test"][0]["text"] == "9"


def test_normalize_unicode_and_whitespace():
    n = Normalize(["text"], "NFKC")
    assert n.text("ﬁne\u00a0 text \t here\r\n\n\n\nnext ") == "fine text here\n\nnext"
