import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailor.data import STAGE as DATA_STAGE
from tailor.splits import load_split
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
    return DATA_STAGE.call(spec, out), out


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


def labelled(tmp_path, n=400, seed=0):
    """A corpus with an unbalanced label (20% 'rare') and a near-duplicate of every 10th record."""
    import random

    rng = random.Random(seed)
    vocab = ["drill", "saw", "battery", "motor", "blade", "wood", "metal", "grip", "torque", "chuck", "speed", "case"]
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(vocab) for _ in range(40)) + f" item {chr(97 + i % 26)}{chr(97 + i // 26 % 26)}"
        rows.append({"text": text, "label": "rare" if i % 5 == 0 else "common", "group": f"g{i // 4}"})
        if i % 10 == 0:
            rows.append({"text": text + " indeed", "label": rows[-1]["label"], "group": f"g{i // 4}"})
    (tmp_path / "l.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def split_of(out) -> dict:
    return {r["text"]: s for s in ("train", "validation", "test") for r in load_split(out, s)}


def test_stratified_split_keeps_label_proportions(tmp_path):
    labelled(tmp_path)
    report, out = run(tmp_path, spec_for(tmp_path, "[{type: files, path: l.jsonl}]", extra=(
        "  clean: []\n  split: {train: 0.6, validation: 0.2, test: 0.2, stratify: label}\n")))
    dist = report["labels"]["splits"]
    assert report["labels"]["field"] == "label"
    for name in ("train", "validation", "test"):
        total = dist[name]["rare"] + dist[name]["common"]
        assert abs(dist[name]["rare"] / total - 120 / 440) < 0.01, (name, dist)   # 80 rare + their 40 copies
    assert report["splits"] == {"train": 264, "validation": 88, "test": 88}


def test_grouped_split_keeps_near_duplicates_together_and_reports_leakage(tmp_path):
    rows = labelled(tmp_path)
    pairs = [(a["text"], b["text"]) for a, b in zip(rows, rows[1:]) if b["text"] == a["text"] + " indeed"]
    base = "[{type: files, path: l.jsonl}]"
    plain, out = run(tmp_path, spec_for(tmp_path, base, extra="  clean: []\n  split: {seed: 1}\n"))
    where = split_of(out)
    crossing = sum(where[a] != where[b] for a, b in pairs)
    assert crossing > 0 and plain["duplicates"]["cross_split_pairs"] == crossing
    assert plain["duplicates"]["near_duplicate_pairs"] == len(pairs) == 40
    grouped, out = run(tmp_path, spec_for(tmp_path, base, extra="  clean: []\n  split: {seed: 1, group: near_duplicates}\n"))
    where = split_of(out)
    assert all(where[a] == where[b] for a, b in pairs) and grouped["duplicates"]["cross_split_pairs"] == 0
    assert grouped["duplicates"]["groups"] == 400
    by_field, out = run(tmp_path, spec_for(tmp_path, base, extra="  clean: []\n  split: {group: group, stratify: label}\n"))
    groups = {}
    for s in ("train", "validation", "test"):
        for r in load_split(out, s):
            groups.setdefault(r["group"], set()).add(s)
    assert all(len(v) == 1 for v in groups.values()) and by_field["duplicates"]["groups"] == 100


def test_workers_and_shards_give_the_same_result(tmp_path):
    """datatrove's executor with 2 workers over 12 shards writes exactly what one process writes."""
    labelled(tmp_path, n=300)
    clean = "  clean: [{normalize: {}}, {pii: {}}, {dedup: {}}, {quality: {max_top_ngram_ratio: 0.5}}, {near_dedup: {}}, {lowercase: {}}]\n"
    one, out1 = run(tmp_path, spec_for(tmp_path, "[{type: files, path: l.jsonl}]", extra=clean))
    first = {s: load_split(out1, s) for s in ("train", "validation", "test")}
    dropped1 = (out1 / "dropped.jsonl").read_text()
    many, out2 = run(tmp_path, spec_for(tmp_path, "[{type: files, path: l.jsonl}]",
                                        extra=clean + "  engine: {workers: 2, chunk_size: 30}\n"))
    assert many["engine"]["workers"] == 2 and many["engine"]["shards"] >= 10
    assert {s: load_split(out2, s) for s in ("train", "validation", "test")} == first
    assert (out2 / "dropped.jsonl").read_text() == dropped1
    strip = lambda r: [{k: v for k, v in s.items()} for s in r["steps"]]  # noqa: E731
    assert strip(many) == strip(one) and many["dropped"] == one["dropped"] > 0


def test_streaming_memory_stays_bounded(tmp_path):
    """Twice the corpus (8 MB -> 16 MB of 2 kB records) costs only the per-record dedup state, not the text."""
    import tracemalloc

    def peak(n: int) -> int:
        line = json.dumps({"text": "x" * 2000})[:-2]
        with open(tmp_path / "big.jsonl", "w") as f:
            for i in range(n):
                f.write(f'{line} {i}"}}\n')
        spec = spec_for(tmp_path, "[{type: files, path: big.jsonl}]",
                        extra="  clean: [{normalize: {}}, {dedup: {}}]\n  split: {leakage_check: false}\n"
                              "  engine: {chunk_size: 500}\n")
        tracemalloc.start()
        report, _ = run(tmp_path, spec)
        result = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert report["kept"] == n
        return result

    peak(100)  # imports happen once, outside the measurement
    small, large = peak(4_000), peak(8_000)
    assert large < 8e6 and large - small < 1.5e6, (small, large)


def test_report_section_and_dropped_samples(tmp_path):
    from tailor.data.report import data_section

    labelled(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"text": "tiny", "label": "rare"}\n')
    report, out = run(tmp_path, spec_for(tmp_path, "[{type: files, path: l.jsonl}, {type: files, path: x.jsonl}]", extra=(
        "  clean: [{quality: {min_words: 3, max_top_ngram_ratio: null}}, {near_dedup: {threshold: 0.7}}, {lowercase: {}}]\n"
        "  split: {stratify: label}\n")))
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["quality"]["samples"]["too few words"][0]["_source"].endswith("x.jsonl:1")
    assert steps["near_dedup"]["dropped"] == {"near duplicate": 40} and report["duplicates"]["near"] == 40
    assert "lowercase on for a generative model" in report["warnings"][1] and "x.jsonl): all 1 records" in report["warnings"][0]
    page = data_section(out)
    for part in ("<h3>Labels (label)</h3>", "<svg", "near duplicate (5 shown)", "too few words", "Warning:",
                 "across splits: <b>0</b>", "loaded 441"):
        assert part in page, part


def test_tailor_data_command_and_cache(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tailor.cli import app

    labelled(tmp_path, n=50)
    (tmp_path / "s.yaml").write_text("name: d\nproblem: {domain: d, task: t}\ndata:\n  sources: [{type: files, path: l.jsonl}]\n")
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(app, ["data", "s.yaml"])
    assert first.exit_code == 0, first.output
    assert "exact duplicate" not in first.output and "loaded 55, generated 0, kept 55" in first.output
    second = CliRunner().invoke(app, ["data", "s.yaml"])
    assert "skipped: inputs unchanged" in second.output
    assert len(list((tmp_path / "runs" / "d").iterdir())) == 1
    (tmp_path / "l.jsonl").write_text((tmp_path / "l.jsonl").read_text() + '{"text": "one more"}\n')
    third = CliRunner().invoke(app, ["data", "s.yaml"])
    assert "loaded 56" in third.output


def test_spec_errors_for_sources_and_steps_name_the_key(tmp_path):
    def errors(sources: str, extra: str = "") -> str:
        with pytest.raises(TailorError) as e:
            spec_for(tmp_path, sources, extra=extra)
        return str(e.value)

    msg = errors("[{type: web, seeds: ['http://127.0.0.1/'], max_pagez: 3}]")
    assert "s.yaml:4: data.sources[0].max_pagez: unknown key (did you mean 'max_pages'?)" in msg
    assert "allowed: allow, backoff, cache, deny" in msg and "templates" not in msg   # only the web source's keys
    assert "set `templates` (Jinja) or `model`" in errors("[{type: synthetic}]")
    assert "a model source needs `seeds`" in errors("[{type: synthetic, model: smollm2-135m}]")
    assert "data.sources[0]: Input tag 'ftp' found using 'type' does not match any of the expected tags: 'files'" in errors(
        "[{type: ftp, path: x}]")
    assert "item 0 (near_dedup): bands (5) must divide num_perm (112)" in errors(
        "[{type: files, path: x}]", "  clean: [{near_dedup: {bands: 5}}]\n")
    assert "item 0 (label_rules): rules.0: a rule needs a pattern or keywords" in errors(
        "[{type: files, path: x}]", "  clean: [{label_rules: {rules: [{label: a}]}}]\n")


def test_a_source_emptied_by_cleaning_is_reported(tmp_path):
    (tmp_path / "good.jsonl").write_text('{"text": "a fine sentence about drills and saws"}\n')
    (tmp_path / "short.jsonl").write_text('{"text": "hi"}\n{"text": "yo"}\n')
    report, out = run(tmp_path, spec_for(tmp_path, "[{type: files, path: good.jsonl}, {type: files, path: short.jsonl}]",
                                         extra="  clean: [{quality: {min_words: 3}}]\n  split: {train: 1, validation: 0, test: 0}\n"))
    assert [s["kept"] for s in report["sources"]] == [1, 0]
    assert report["warnings"][0].startswith("data.sources[1] (") and "all 2 records were dropped by cleaning" in report["warnings"][0]
    assert "_source_index" not in load_split(out, "train")[0]
    dropped = [json.loads(line) for line in (out / "dropped.jsonl").read_text().splitlines()]
    assert [d["record"]["_source_index"] for d in dropped] == [1, 1]
