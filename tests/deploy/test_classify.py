"""/v1/classify: label, token-label and score models trained tiny here, served with keys, limits and metrics."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import httpx
import pytest
import torch

from tailor.deploy.auth import KeyStore
from tailor.deploy.server import create_app
from tailor.evaluate.predictions import read_predictions
from tailor.run import Pipeline
from tailor.spec import load_spec
from tailor.spec.deploy import Limits, Serve

from .conftest import running

RUNS = {  # problem.output -> (fields, model, training steps)
    "label": ({"input": "text", "output": "intent"}, {"arch": {"n_layer": 1, "n_head": 2, "n_embd": 32}}, 40),
    "score": ({"input": "text", "output": "stars"}, {"arch": {"family": "gru", "n_layer": 1, "n_embd": 16,
                                                              "n_hidden": 16}}, 8),
    "token-labels": ({"input": "words", "output": "tags"}, {"arch": {"n_layer": 1, "n_head": 2, "n_embd": 32}}, 40),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One finished run per task head (data, training and evaluation), keyed by problem.output."""
    from test_labels import spec_file, tagged, tickets

    out = {}
    for output, (fields, model, steps) in RUNS.items():
        root = tmp_path_factory.mktemp(output)
        path = spec_file(root, output, fields, model, {"train": {"max_steps": steps, "eval_every": steps}},
                         tagged() if output == "token-labels" else tickets())
        out[output] = Pipeline(load_spec(path), root / "runs").run("evaluate")
    return out


@pytest.fixture(scope="module")
def served(runs, home, keys):
    """Every head served at once, with default settings; keyed like `runs`."""
    import contextlib

    with contextlib.ExitStack() as stack:
        yield {k: stack.enter_context(running(create_app(run, home=home))) for k, run in runs.items()}


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _test_rows(run: Path) -> list[dict]:
    return [r for r in read_predictions(run) if r["split"] == "test"]


def _classify(url: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/classify", json=body, headers=_auth(key), timeout=60)


def test_labels_are_the_evaluations_predictions(served, runs, keys):
    rows = _test_rows(runs["label"])
    assert len({r["predicted"] for r in rows}) > 1  # the model tells intents apart: the check is not vacuous
    res = _classify(served["label"], keys["infer"], {"input": [r["input"] for r in rows], "top_k": 3})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["object"] == "classification" and body["output"] == "label" and len(body["data"]) == len(rows)
    for row, item in zip(rows, body["data"]):
        assert item["label"] == row["predicted"] and item["probability"] == pytest.approx(row["confidence"], abs=1e-5)
        assert [x["label"] for x in item["labels"]][0] == item["label"] and len(item["labels"]) == 3
        assert sum(x["probability"] for x in item["labels"]) == pytest.approx(1.0, abs=1e-5)
    assert body["usage"]["prompt_tokens"] > len(rows)


def test_a_label_equals_the_models_own_prediction_through_tailor_models(served, runs, keys):
    from tailor.models import labels_of, load_model, logits_of
    from tailor.tokenizer import Codec

    folder = runs["label"] / "train" / "model"
    model, codec = load_model(folder).eval(), Codec.load(folder)
    texts = ["please refund order 12", "where is parcel 7", "cannot log in to account 3", "track package 99 now"]

    def ask(text: str) -> dict:  # concurrent requests: the engine batches (and pads) them together
        return _classify(served["label"], keys["infer"], {"input": text, "top_k": 1}).json()["data"][0]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, texts))
    for text, answer in zip(texts, answers):
        ids = torch.tensor([codec.encode(text) + [codec.eos_id]])  # one unpadded input, as the head reads it
        with torch.no_grad():
            probs = logits_of(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})[0].softmax(-1)
        assert answer["label"] == labels_of(model)[int(probs.argmax())]
        assert answer["probability"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_scores_are_the_evaluations_predictions(served, runs, keys):
    rows = _test_rows(runs["score"])
    body = _classify(served["score"], keys["infer"], {"input": [r["input"] for r in rows]}).json()
    assert body["output"] == "score"
    assert [d["value"] for d in body["data"]] == pytest.approx([r["score_pred"] for r in rows], abs=1e-5)


def test_token_labels_name_each_word_as_the_evaluation_does(served, runs, keys):
    rows = _test_rows(runs["token-labels"])
    texts: dict[int, list[dict]] = {}
    for r in rows:  # one prediction row per word
        texts.setdefault(r["index"], []).append(r)
    inputs = [" ".join(w["input"] for w in words) for words in texts.values()]
    body = _classify(served["token-labels"], keys["infer"], {"input": inputs, "top_k": 2}).json()
    assert body["output"] == "token-labels"
    for words, item in zip(texts.values(), body["data"]):
        assert [w["word"] for w in item["words"]] == [w["input"] for w in words]
        assert [w["label"] for w in item["words"]] == [w["predicted"] for w in words]
        assert all(len(w["labels"]) == 2 for w in item["words"])


def test_generation_routes_and_classify_point_at_each_other(served, served_chatty, keys):
    infer = _auth(keys["infer"])
    res = httpx.post(f"{served['label']}/v1/completions", json={"prompt": "refund 3"}, headers=infer)
    assert res.status_code == 400 and "/v1/classify" in res.json()["error"]["message"]
    res = httpx.post(f"{served['score']}/v1/chat/completions", headers=infer,
                     json={"messages": [{"role": "user", "content": "refund 3"}]})
    assert res.status_code == 400 and "/v1/classify" in res.json()["error"]["message"]
    res = _classify(served_chatty.url, keys["infer"], {"input": "x"})
    assert res.status_code == 400 and "/v1/completions" in res.json()["error"]["message"]


def test_classify_needs_a_key_and_valid_input(served, keys):
    url = served["label"]
    assert httpx.post(f"{url}/v1/classify", json={"input": "x"}).status_code == 401
    for body in ({"input": []}, {"input": ["x"] * 65}, {"input": "x", "top_k": 0}, {}):
        assert _classify(url, keys["infer"], body).status_code == 422, body


def test_classify_limits_answer_422_413_and_429(runs, home):
    limits = Limits(max_input_tokens=12, max_body=2000, rate_limit=0.5, burst=3)
    key = KeyStore(home / "keys.db").create("classify-limits", ["infer"])[1]
    with running(create_app(runs["label"], Serve(limits=limits), home=home)) as url:
        res = _classify(url, key, {"input": "please refund order 123 right now thanks"})
        assert res.status_code == 422 and "at most 12 are allowed" in res.json()["error"]["message"]
        assert _classify(url, key, {"input": "y" * 3000}).status_code == 413
        codes = [_classify(url, key, {"input": "refund 1"}).status_code for _ in range(3)]
        assert codes[0] == 200 and 429 in codes, codes


def test_classifications_are_counted_in_metrics_and_corrections_are_checked(served, runs, keys):
    url = served["label"]
    body = _classify(url, keys["infer"], {"input": "please refund order 5"}).json()
    metrics = httpx.get(f"{url}/metrics", headers=_auth(keys["admin"])).text
    assert f'tailor_predicted_labels_total{{label="{body["data"][0]["label"]}"}}' in metrics
    feedback = {"request_id": body["id"], "correct": False}
    res = httpx.post(f"{url}/v1/feedback", json={**feedback, "correction": "weather"}, headers=_auth(keys["infer"]))
    assert res.status_code == 422 and "refund" in res.json()["error"]["message"]
    res = httpx.post(f"{url}/v1/feedback", json={**feedback, "correction": "refund"}, headers=_auth(keys["infer"]))
    assert res.status_code == 200 and res.json()["stored"]
    labels = json.loads((runs["label"] / "train" / "model" / "config.json").read_text())["labels"]
    assert labels == ["login", "refund", "shipping"]
