"""Every source type through the data stage, on real files made by the test."""

import gzip
import json

import pytest
import zstandard

from test_data import run, spec_for

from tailor.splits import load_split
from tailor.errors import TailorError

ARTICLE = "<p>" + "Cordless drills need charged batteries and a sharp bit to work well. " * 5 + "</p>"


def records(out) -> list[dict]:
    return [r for s in ("train", "validation", "test") for r in load_split(out, s)]


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose text layer holds `text` (Helvetica), with a correct xref table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)


def test_json_html_pdf_and_compressed_files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.json").write_text(json.dumps({"data": [{"text": "from a json array"}, {"text": "second json"}]}))
    (d / "page.html").write_text(f"<html><head><title>Drills</title></head><body><article>{ARTICLE}</article></body></html>")
    (d / "doc.pdf").write_bytes(minimal_pdf("Hello from the PDF text layer"))
    (d / "g.jsonl.gz").write_bytes(gzip.compress(b'{"text": "gzip line"}\n'))
    (d / "z.txt.zst").write_bytes(zstandard.ZstdCompressor().compress(b"zstd paragraph\n\nanother one\n"))
    report, out = run(tmp_path, spec_for(tmp_path, "[{type: files, path: in}]", extra="  split: {train: 1, validation: 0, test: 0}\n"))
    texts = {r["text"] for r in records(out)}
    assert {"from a json array", "second json", "gzip line", "zstd paragraph", "another one",
            "Hello from the PDF text layer"} <= texts
    assert any("Cordless drills" in t for t in texts) and report["loaded"] == 7


def test_field_mapping_label_studio_export_and_tasks(tmp_path):
    export = [{"id": 1, "data": {"body": "where is my parcel"}, "annotations": [
                  {"result": [{"value": {"choices": ["shipping"]}, "from_name": "intent", "to_name": "text", "type": "choices"}]}]},
              {"id": 2, "data": {"body": "refund me please"}, "annotations": [
                  {"was_cancelled": True, "result": [{"value": {"choices": ["shipping"]}}]},
                  {"result": [{"value": {"choices": ["refund"]}}]}]}]
    (tmp_path / "ls.json").write_text(json.dumps(export))
    (tmp_path / "more.csv").write_text("message,intent\nthe box never arrived,shipping\n")
    spec = spec_for(tmp_path, "[{type: files, path: ls.json, format: label_studio, map: {text: body}},"
                              " {type: files, path: more.csv, map: {text: message, label: intent}}]",
                    "{input: text, output: label}", "  label_studio: true\n  split: {train: 1, validation: 0, test: 0}\n")
    report, out = run(tmp_path, spec)
    got = {r["text"]: r["label"] for r in records(out)}
    assert got == {"where is my parcel": "shipping", "refund me please": "refund", "the box never arrived": "shipping"}
    tasks = json.loads((out / "label_studio.json").read_text())
    assert len(tasks) == 3 and {t["predictions"][0]["result"][0]["value"]["choices"][0] for t in tasks} == {"shipping", "refund"}
    assert all("label" not in t["data"] and t["data"]["text"] for t in tasks)


def test_csv_missing_mapped_column_names_it(tmp_path):
    (tmp_path / "m.csv").write_text("message\nhi\n")
    with pytest.raises(TailorError, match=r"m\.csv:1: the header has no column 'body'"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: m.csv, map: {text: body}}]"))


def test_on_error_skip_quarantines_malformed_records(tmp_path):
    (tmp_path / "mixed.jsonl").write_bytes(b'{"text": "good one"}\n{"text": broken\n[1, 2]\n{"other": 1}\n'
                                           b'bad \xff bytes\n{"text": "good two"}\n')
    spec = spec_for(tmp_path, "[{type: files, path: mixed.jsonl}]", extra="  on_error: skip\n")
    report, out = run(tmp_path, spec)
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["where"].rsplit(":", 1)[1] for r in rejected] == ["2", "3", "4", "5"]
    assert [r["reason"].split(" (")[0] for r in rejected] == [
        "not valid JSON", "expected a JSON object, got list", "missing field 'text'", "byte 4 of the line is not valid UTF-8"]
    assert report["rejected"] == 4 and report["loaded"] == 2 == report["kept"] + report["dropped"]
    with pytest.raises(TailorError, match=r"mixed\.jsonl:2: not valid JSON.*on_error: skip"):
        run(tmp_path, spec_for(tmp_path, "[{type: files, path: mixed.jsonl}]"))


def test_hf_dataset_from_local_folders(tmp_path):
    import datasets

    (tmp_path / "hub_like").mkdir()
    (tmp_path / "hub_like" / "train.jsonl").write_text("".join(json.dumps({"content": f"row {i}"}) + "\n" for i in range(30)))
    datasets.Dataset.from_dict({"text": [f"saved {i}" for i in range(12)]}).save_to_disk(str(tmp_path / "saved"))
    spec = spec_for(tmp_path, "[{type: hf_dataset, name: hub_like, streaming: true, max_records: 20, map: {text: content}},"
                              " {type: hf_dataset, name: saved, split: test}]",
                    extra="  split: {train: 1, validation: 0, test: 0}\n")
    report, out = run(tmp_path, spec)
    assert [s["records"] for s in report["sources"]] == [20, 12]
    assert {r["text"] for r in load_split(out, "test")} == {f"saved {i}" for i in range(12)}
    assert [r["text"] for r in load_split(out, "train")] == [f"row {i}" for i in range(20)]
    assert load_split(out, "train")[3]["source"].endswith("[train]:4")
    with pytest.raises(TailorError, match=r"data\.sources\[0\]\.name: cannot load dataset"):
        run(tmp_path, spec_for(tmp_path, "[{type: hf_dataset, name: " + str(tmp_path / "nothing-here") + "}]"))


def test_warc_html_responses(tmp_path):
    from io import BytesIO

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path = tmp_path / "crawl.warc.gz"
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, ctype, body in [("http://shop.test/a", "text/html; charset=utf-8", f"<html><body><article>{ARTICLE}</article></body></html>"),
                                 ("http://shop.test/logo.png", "image/png", "PNG"),
                                 ("http://shop.test/b", "text/html", "<html><body><article><p>Second page. " * 20 + "</p></article></body></html>")]:
            headers = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=BytesIO(body.encode()), http_headers=headers))
    report, out = run(tmp_path, spec_for(tmp_path, "[{type: warc, path: crawl.warc.gz}]",
                                         extra="  split: {train: 1, validation: 0, test: 0}\n"))
    rows = load_split(out, "train")
    assert [r["url"] for r in rows] == ["http://shop.test/a", "http://shop.test/b"]
    assert "Cordless drills" in rows[0]["text"] and report["sources"][0]["skipped"] == {"not HTML (image/png)": 1}
    (tmp_path / "bad.warc").write_bytes(b"this is not a warc file at all\n")
    with pytest.raises(TailorError, match=r"bad\.warc: not a readable WARC file"):
        run(tmp_path, spec_for(tmp_path, "[{type: warc, path: bad.warc}]"))


def test_synthetic_templates_sample_and_tag(tmp_path):
    spec = spec_for(tmp_path, """
    - type: synthetic
      templates: {question: "How heavy is the {{ product }}?", answer: "{{ weights[product] if weights is defined else '1 kg' }}"}
      values: {product: [Voltra D18, Brisk S2, Kord 9], tone: [plain, polite]}
    - {type: synthetic, templates: {question: "Colour of {{ name }}?", answer: "{{ colour }}"}, rows: colours.csv, count: 2, seed: 3}
    - {type: synthetic, templates: {question: "{{ ask }} {{ name }}?", answer: "{{ colour }}"}, rows: colours.csv,
       values: {ask: ["Colour of", "What colour is"]}, split: test}
""", "{input: question, output: answer}", "  split: {train: 1, validation: 0, test: 0}\n  clean: []\n")
    (tmp_path / "colours.csv").write_text("name,colour\nbox,red\nlid,blue\ncap,green\n")
    report, out = run(tmp_path, spec)
    rows = load_split(out, "train")
    assert report["generated"] == 14 and report["loaded"] == 0 and all(r["synthetic"] for r in rows)
    assert sorted(r["question"] for r in load_split(out, "test"))[:2] == ["Colour of box?", "Colour of cap?"]
    assert len(load_split(out, "test")) == 6                                    # 3 rows x 2 wordings
    assert sum(r["question"] == "How heavy is the Voltra D18?" for r in rows) == 2   # once per tone
    colours = [r for r in rows if r["question"].startswith("Colour")]
    assert len(colours) == 2 and all(r["answer"] in ("red", "blue", "green") for r in colours)
    bad = spec_for(tmp_path, "[{type: synthetic, templates: {text: '{{ missing_name }}'}, values: {x: [1]}}]")
    with pytest.raises(TailorError, match=r"data\.sources\[0\]\.templates: 'missing_name' is undefined"):
        run(tmp_path, bad)


def test_synthetic_templates_join_tables_hold_wordings_out_and_add_noise(tmp_path):
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"product": "D18", "attribute": "weight", "answer": "1.6 kg", "mentions": ["the D18", "Voltra D18"]},
        {"product": "S2", "attribute": "weight", "answer": "2.9 kg", "mentions": ["the S2"]},
        {"product": "S2", "attribute": "price", "answer": "$99", "mentions": ["the S2"]}]))
    (tmp_path / "wordings.csv").write_text("attribute,frame\nweight,how heavy is {p}\nweight,what does {p} weigh\n"
                                           "price,how much is {p}\nvoltage,how many volts is {p}\n")
    source = """{type: synthetic, rows: [facts.jsonl, wordings.csv], values: {end: ["?", "? thanks", "!"]},
       templates: {question: "{{ (frame | typo(0.5)) | replace('{p}', pick(mentions)) ~ end }}", answer: "{{ answer }}",
                   bucket: "{{ bucket(frame, end) }}"}"""
    spec = spec_for(tmp_path, f"""
    - {source}, when: "bucket(frame, end) >= 40"}}
    - {source}, when: "bucket(frame, end) < 40", split: test}}
""", "{input: question, output: answer}", "  split: {train: 1, validation: 0, test: 0}\n  clean: []\n")
    report, out = run(tmp_path, spec)
    train, test = load_split(out, "train"), load_split(out, "test")
    # the join: 3 facts x their attribute's wordings (2 + 2 + 1; voltage matches no fact) x 3 endings
    assert report["generated"] == 15 == len(train) + len(test) and train and test
    assert all(int(r["bucket"]) >= 40 for r in train) and all(int(r["bucket"]) < 40 for r in test)
    typos = [r for r in train + test if not any(w in r["question"] for w in ("how heavy is", "what does", "how much is"))]
    assert typos and all("the D18" in r["question"] or "Voltra D18" in r["question"] or "the S2" in r["question"]
                         for r in train + test)   # a slip never touches the product's name
    again = run(tmp_path, spec)[1]
    assert load_split(again, "train") == train    # picks and slips are seeded

    def fails(source_yaml: str, pattern: str) -> None:
        with pytest.raises(TailorError, match=pattern):
            run(tmp_path, spec_for(tmp_path, source_yaml))

    fails("[{type: synthetic, model: smollm2-135m, seeds: [{q: 1}], count: 1, when: 'x'}]", "`when` selects template")
    fails("[{type: synthetic, templates: {text: '{{ frame }}'}, rows: [facts.jsonl, wordings.csv], when: 'frame <'}]",
          r"sources\[0\]\.when: line 1")
    fails("[{type: synthetic, templates: {text: '{{ a }}'}, values: {a: [1]}, when: 'nothing > 1'}]",
          r"sources\[0\]\.when: 'nothing' is undefined")
    (tmp_path / "other.csv").write_text("attribute,colour\nsize,red\n")
    fails("[{type: synthetic, templates: {text: '{{ colour }}'}, rows: [facts.jsonl, other.csv]}]",
          r"sources\[0\]\.rows: the tables have no rows that agree on their shared fields")


def test_synthetic_model_writes_examples_that_are_cleaned(tmp_path):
    """SmolLM2 writes two examples from seed examples; unusable generations are dropped and counted."""
    (tmp_path / "seeds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": "How heavy is the Voltra D18 drill?", "answer": "1.6 kg"},
        {"question": "What is the battery voltage of the Brisk S2 saw?", "answer": "18 V"},
        {"question": "How long is the cable of the Kord 9 sander?", "answer": "3 m"}]))
    spec = spec_for(tmp_path, "[{type: synthetic, model: smollm2-135m, seeds: seeds.jsonl, count: 2, max_new_tokens: 24, seed: 1}]",
                    "{input: question, output: answer}", "  split: {train: 1, validation: 0, test: 0}\n")
    try:
        report, out = run(tmp_path, spec)
    except TailorError as e:  # every generation may miss the format; that must still be counted, not lost
        assert "no records left after cleaning" in str(e)
        dropped = [json.loads(line) for line in (tmp_path / "out" / "dropped.jsonl").read_text().splitlines()]
        assert len(dropped) == 2 and all(d["step"] == "generated" for d in dropped)
        return
    assert report["generated"] == 2 == report["kept"] + report["dropped"]
    for r in load_split(out, "train"):
        assert r["synthetic"] is True and r["question"].strip() and r["answer"].strip()
        assert json.loads(r["seed_examples"]) and r["source"].startswith("data.sources[0]#")
