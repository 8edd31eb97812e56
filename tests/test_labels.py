"""The label, score and token-label road end to end: data -> heads -> training -> evaluation numbers."""

import json
import random

import pytest
import yaml

from tailor.errors import TailorError
from tailor.run import Pipeline
from tailor.spec import load_spec, parse_spec

INTENTS = {"refund": ["please refund order {n}", "i want my money back for {n}", "refund {n} now"],
           "shipping": ["where is parcel {n}", "order {n} has not arrived", "track package {n}"],
           "login": ["cannot log in to account {n}", "reset password for user {n}", "locked out of {n}"]}
COLOURS = ["red", "blue", "green"]


def write_rows(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tickets(n: int = 150, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        intent = list(INTENTS)[i % 3]
        rows.append({"text": rng.choice(INTENTS[intent]).format(n=rng.randrange(1000)), "intent": intent,
                     "stars": float(len(intent)), "channel": rng.choice(["chat", "email"])})
    return rows


def tagged(n: int = 120, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randrange(3, 7)):
            kind = rng.choice(["colour", "number", "word"])
            words.append(rng.choice(COLOURS) if kind == "colour" else str(rng.randrange(100)) if kind == "number"
                         else rng.choice(["the", "box", "is", "and", "a", "car"]))
            tags.append({"colour": "COLOUR", "number": "NUM", "word": "O"}[kind])
        rows.append({"words": words, "tags": tags})
    return rows


def spec_file(tmp_path, output: str, fields: dict, model: dict, extra: dict | None = None, rows=None) -> object:
    write_rows(tmp_path / "data" / "rows.jsonl", rows if rows is not None else tickets())
    spec = {"name": f"labels-{output}", "problem": {"domain": "tests", "task": "label", "output": output},
            "data": {"sources": [{"type": "files", "path": "data/rows.jsonl"}], "fields": fields,
                     "split": {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 0}},
            "tokenizer": {"type": "char_bpe", "vocab_size": 120, "byte_fallback": False},
            "model": model,
            "train": {"max_steps": 8, "batch_size": 16, "eval_every": 8, "eval_batches": 2,
                      "optimizer": {"lr": 3e-3}, "schedule": {"warmup_steps": 2}}}
    for key, value in (extra or {}).items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def predictions(run_dir, split: str = "test") -> list[dict]:
    from tailor.evaluate.predictions import read_predictions

    return [r for r in read_predictions(run_dir) if r["split"] == split]


def run(path, until: str | None = None):
    run_dir = Pipeline(load_spec(path), path.parent / "runs").run(until)
    return run_dir, (json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {})


def f1_by_hand(rows: list[dict]) -> float:
    labels = {r["expected"] for r in rows} | {r["predicted"] for r in rows}
    scores = []
    for label in labels:
        tp = sum(r["expected"] == label == r["predicted"] for r in rows)
        fp = sum(r["predicted"] == label != r["expected"] for r in rows)
        fn = sum(r["expected"] == label != r["predicted"] for r in rows)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def test_scratch_transformer_classifier_learns_and_reports_f1_macro(tmp_path):
    path = spec_file(tmp_path, "label", {"input": "text", "output": "intent"},
                     {"arch": {"n_layer": 1, "n_head": 2, "n_embd": 32}},
                     {"train": {"max_steps": 60, "eval_every": 30},
                      "problem": {"targets": [{"metric": "f1_macro", "split": "test", "at_least": 0.9}]}})
    run_dir, metrics = run(path)
    rows = predictions(run_dir)
    assert metrics["test/examples"] == len(rows) == json.loads((run_dir / "data" / "report.json").read_text())["splits"]["test"]
    assert metrics["test/f1_macro"] == pytest.approx(f1_by_hand(rows))
    assert metrics["test/accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
    assert metrics["test/f1_macro"] >= 0.9 and json.loads((run_dir / "run.json").read_text())["targets"]["met"] == 1
    assert {"meta.channel", "confidence"} <= set(rows[0])
    results = json.loads((run_dir / "evaluate" / "results.json").read_text())
    low, high = results["intervals"]["test/f1_macro"]
    assert low <= metrics["test/f1_macro"] <= high  # bootstrap interval from the shared evaluation
    errors = json.loads((run_dir / "evaluate" / "errors.json").read_text())
    assert "channel" in errors["slices"]
    report = json.loads((run_dir / "model" / "report.json").read_text())
    assert report["labels"] == ["login", "refund", "shipping"] and report["head"] == "classification"


def test_bidirectional_lstm_encoder_classifies(tmp_path):
    path = spec_file(tmp_path, "label", {"input": "text", "output": "intent"},
                     {"arch": {"family": "lstm", "n_layer": 1, "n_embd": 16, "n_hidden": 16, "bidirectional": True},
                      "pooling": "last"})
    _, metrics = run(path)
    assert {"validation/f1_macro", "test/accuracy", "test/precision_macro", "test/recall_macro", "test/loss"} <= set(metrics)


def test_gru_regression_reports_errors_and_correlation(tmp_path):
    path = spec_file(tmp_path, "score", {"input": "text", "output": "stars"},
                     {"arch": {"family": "gru", "n_layer": 1, "n_embd": 16, "n_hidden": 16}})
    run_dir, metrics = run(path)
    rows = predictions(run_dir)
    errors = [r["score_pred"] - r["score_true"] for r in rows]
    assert metrics["test/mse"] == pytest.approx(sum(e ** 2 for e in errors) / len(rows)) == metrics["test/loss"]
    assert metrics["test/mae"] == pytest.approx(sum(abs(e) for e in errors) / len(rows))
    assert {"test/r2", "test/pearson"} <= set(metrics)


def test_token_labels_are_learned_per_word(tmp_path):
    path = spec_file(tmp_path, "token-labels", {"input": "words", "output": "tags"},
                     {"arch": {"n_layer": 1, "n_head": 2, "n_embd": 32}}, {"train": {"max_steps": 80}}, tagged())
    run_dir, metrics = run(path)
    rows = predictions(run_dir)  # one row per word
    test = json.loads((run_dir / "data" / "report.json").read_text())["splits"]["test"]
    assert len({r["index"] for r in rows}) == test and all(r["expected"] in ("COLOUR", "NUM", "O") for r in rows)
    assert metrics["test/accuracy"] == pytest.approx(sum(r["expected"] == r["predicted"] for r in rows) / len(rows))
    assert metrics["test/accuracy"] > 0.8


def test_pretrained_encoder_folder_gets_a_fresh_head_and_saves_for_transformers(tmp_path, tiny_bert_dir):
    from transformers import AutoModelForSequenceClassification

    path = spec_file(tmp_path, "label", {"input": "text", "output": "intent"},
                     {"base": str(tiny_bert_dir), "adapt": {"freeze": {"embeddings": True, "bottom_layers": 1}}},
                     {"tokenizer": {"type": "pretrained", "vocab_size": 4096, "byte_fallback": True}})
    run_dir, metrics = run(path)
    assert "test/f1_macro" in metrics
    model = AutoModelForSequenceClassification.from_pretrained(str(run_dir / "train" / "model"))
    assert model.config.id2label == {0: "login", 1: "refund", 2: "shipping"}
    assert json.loads((run_dir / "train" / "summary.json").read_text())["adapt"]["frozen"] == ["embeddings", "layer 0"]


def test_classification_needs_two_labels(tmp_path):
    rows = [{**r, "intent": "refund"} for r in tickets(30)]
    path = spec_file(tmp_path, "label", {"input": "text", "output": "intent"}, {}, rows=rows)
    with pytest.raises(TailorError, match="classification head needs at least 2 distinct labels; the data has 1"):
        run(path)


def test_empty_label_is_dropped_by_cleaning_or_named_without_it(tmp_path):
    rows = tickets(30)
    rows[4]["intent"] = " "
    path = spec_file(tmp_path, "label", {"input": "text", "output": "intent"}, {}, rows=rows)
    run_dir, _ = run(path, "data")
    assert json.loads((run_dir / "data" / "report.json").read_text())["steps"][0]["dropped"] == {"empty intent": 1}
    path = spec_file(tmp_path, "label", {"input": "text", "output": "intent"}, {}, {"data": {"clean": []}}, rows)
    with pytest.raises(TailorError, match=r"rows.jsonl:5: the label field 'intent'"):
        run(path)


def test_token_labels_must_match_the_words(tmp_path):
    rows = tagged(30)
    rows[2]["tags"] = rows[2]["tags"][:-1]
    path = spec_file(tmp_path, "token-labels", {"input": "words", "output": "tags"}, {}, rows=rows)
    with pytest.raises(TailorError, match=r"rows.jsonl:3: \d words in 'words' but \d labels in 'tags'"):
        run(path)


def test_scores_must_be_numbers(tmp_path):
    rows = tickets(30)
    rows[7]["stars"] = "five"
    path = spec_file(tmp_path, "score", {"input": "text", "output": "stars"}, {}, rows=rows)
    with pytest.raises(TailorError, match=r"rows.jsonl:8: field 'stars' \(data.fields.output\) is 'five', not a number"):
        run(path)


def test_a_tokenizer_from_another_model_that_does_not_fit_is_refused(tmp_path, tiny_bert_dir, tiny_llama_dir):
    path = spec_file(tmp_path, "text", {"input": "text", "output": "intent"}, {"base": str(tiny_llama_dir)},
                     {"tokenizer": {"type": "pretrained", "source": str(tiny_bert_dir)}})
    with pytest.raises(TailorError, match=r"tokenizer has 30522 tokens but model.base .* has \d+ embedding rows"):
        run(path, "model")


SPEC_ERRORS = [
    ("output: label", "{input: text, output: intent}", "model: {head: causal_lm}",
     "model.head: 'causal_lm' does not fit problem.output 'label'; expected 'classification'"),
    ("output: label", "{text: text}", "", "the label is read from data.fields.output"),
    ("output: text", "{input: q, output: a}", "model: {arch: {family: gru, bidirectional: true}}",
     "bidirectional recurrent encoders are for label"),
    ("output: label", "{input: text, output: intent}", "model: {base: minilm-l6}\ntokenizer: {type: bpe}",
     "tokenizer.type: 'bpe' with the pretrained model.base 'minilm-l6'"),
    ("output: label", "{input: text, output: intent}", "model: {adapt: {freeze: {}, lora: {}}}",
     "LoRA already keeps every base weight fixed"),
    ("output: score", "{input: text, output: stars}", "problem_targets: exact_match", "'exact_match' is not measured"),
]


@pytest.mark.parametrize("output, fields, model, message", SPEC_ERRORS)
def test_heads_that_do_not_fit_the_task_are_spec_errors(output, fields, model, message):
    targets = "  targets: [{metric: exact_match, at_least: 1}]\n" if model.startswith("problem_targets") else ""
    text = (f"name: t\nproblem:\n  domain: d\n  task: t\n  {output}\n{targets}data:\n"
            f"  sources: [{{type: files, path: x.jsonl}}]\n  fields: {fields}\n"
            + ("" if model.startswith("problem_targets") else model + "\n"))
    with pytest.raises(TailorError) as info:
        parse_spec(text, "s.yaml")
    assert message in str(info.value)


def test_arch_errors_name_the_key_path_without_union_tags():
    with pytest.raises(TailorError) as info:
        parse_spec("name: t\nproblem: {domain: d, task: t}\ndata: {sources: [{type: files, path: x}]}\n"
                   "model:\n  arch:\n    family: lstm\n    n_hidden: 8\n    n_head: 2\n", "s.yaml")
    assert "s.yaml:8: model.arch.n_head: unknown key (did you mean 'n_embd'?); allowed: bidirectional, block_size, dropout, family, n_embd, " \
           "n_hidden, n_layer, tie_weights" in str(info.value)
