"""Prometheus metrics, alerts sent to a local webhook, input drift, feedback and online accuracy."""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tailor.deploy.drift import DriftMonitor, psi
from tailor.deploy.server import create_app
from tailor.spec.deploy import Alert, Monitor

from .conftest import running


@pytest.fixture
def webhook():
    """A local HTTP server that collects the JSON bodies POSTed to it."""
    received: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", received
    server.shutdown()


def _samples(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_requests_latency_tokens_and_model(served_chatty, keys):
    infer, admin = ({"Authorization": f"Bearer {keys[k]}"} for k in ("infer", "admin"))
    url = served_chatty.url
    for _ in range(3):
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 5, "temperature": 0},
                          headers=infer).status_code == 200
    httpx.post(f"{url}/v1/completions", json={"max_tokens": 5}, headers=infer)  # 422
    s = _samples(httpx.get(f"{url}/metrics", headers=admin).text)
    assert s[("tailor_requests_total", (("code", "200"), ("route", "/v1/completions")))] >= 3
    assert s[("tailor_request_errors_total", (("code", "422"), ("route", "/v1/completions")))] >= 1
    assert s[("tailor_request_latency_seconds_count", (("route", "/v1/completions"),))] >= 4
    assert s[("tailor_time_to_first_token_seconds_count", ())] >= 3
    assert s[("tailor_generated_tokens_total", ())] >= 15 and s[("tailor_tokens_per_second", ())] > 0
    assert ("tailor_queue_depth", ()) in s
    assert s[("tailor_model_info", (("version", "chatty"),))] == 1


def test_alerts_fire_and_resolve_through_the_webhook(chatty_model, tmp_path, keys, webhook):
    url_hook, received = webhook
    monitor = Monitor(webhook=url_hook, every=0.2, alerts=[
        Alert(metric="p95_latency_ms", above=0.0001, window=60, min_count=2),
        Alert(metric="error_rate", above=0.5, window=60, min_count=2)])
    app = create_app(chatty_model, monitor=monitor, home=tmp_path)
    from tailor.deploy.auth import KeyStore

    headers = {"Authorization": f"Bearer {KeyStore(tmp_path / 'keys.db').create('a', ['infer'])[1]}"}
    with running(app) as url:
        for _ in range(3):
            httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 2}, headers=headers)
        event = received.get(timeout=10)
        assert event["status"] == "firing" and event["rule"] == "p95_latency_ms > 0.0001"
        assert event["value"] > 0.0001 and event["threshold"] == 0.0001
        assert received.empty() or received.get(timeout=1)["metric"] != "error_rate"  # no errors: error rule quiet
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {keys['admin']}"})
        assert metrics.status_code == 401  # keys are per deployment home
    state = app.state.tailor
    assert [e["status"] for e in state.alerter.sent][:1] == ["firing"]
    state.window._items.clear()  # the window empties: with no requests there is no verdict, nothing resolves
    assert state.alerter.evaluate() == []


def test_drift_psi_is_zero_on_training_like_inputs_and_large_on_new_ones():
    rng = np.random.default_rng(0)
    words = ["item", "colour", "what", "is", "of", "the", "tell", "me"]
    train = [" ".join(rng.choice(words, size=rng.integers(3, 7))) + f" {rng.integers(20)}" for _ in range(400)]

    def tokenize(text):
        return [ord(c) for c in text]

    d = DriftMonitor(train, tokenize, window=100)
    for t in train[:100]:
        d.observe(t)
    same = d.scores()
    for i in range(100):
        d.observe(f"Bitte senden Sie die Rechnung Nummer {i} an unsere Buchhaltung in München, danke!")
    shifted = d.scores()
    assert same["length"] < 0.1 and same["ngram"] < 0.1 and same["unknown_token_rate"] == 0
    assert shifted["length"] > 1 and shifted["ngram"] > 1 and shifted["unknown_token_rate"] > 0.01
    assert psi(np.array([10, 10]), np.array([10, 10])) == 0


def test_drift_metric_and_alert_from_served_prompts(finished_run, tmp_path, webhook):
    _, run_dir = finished_run
    url_hook, received = webhook
    monitor = Monitor(webhook=url_hook, every=0.2, drift_window=20,
                      alerts=[Alert(metric="drift_psi", above=0.5, window=60)])
    app = create_app(run_dir, monitor=monitor, home=tmp_path)
    from tailor.deploy.auth import KeyStore

    headers = {"Authorization": f"Bearer {KeyStore(tmp_path / 'keys.db').create('a', ['admin'])[1]}"}
    with running(app) as url:
        for i in range(20):
            res = httpx.post(f"{url}/v1/completions", headers=headers, json={"prompt": f"ZQ{i}#", "max_tokens": 1})
            assert res.status_code == 200, res.text
        event = received.get(timeout=10)
        assert event["metric"] == "drift_psi" and event["status"] == "firing"
        s = _samples(httpx.get(f"{url}/metrics", headers=headers).text)
    assert s[("tailor_drift_psi", (("feature", "ngram"),))] > 0.5


def test_feedback_is_stored_and_feeds_online_accuracy(chatty_model, tmp_path, webhook):
    url_hook, received = webhook
    monitor = Monitor(webhook=url_hook, every=0.2, alerts=[Alert(metric="online_accuracy", below=0.8, min_count=4)])
    app = create_app(chatty_model, monitor=monitor, home=tmp_path)
    from tailor.deploy.auth import KeyStore

    headers = {"Authorization": f"Bearer {KeyStore(tmp_path / 'keys.db').create('a', ['admin'])[1]}"}
    with running(app) as url:
        ids = [httpx.post(f"{url}/v1/completions", json={"prompt": f"item {i} colour?", "max_tokens": 2},
                          headers=headers).json()["id"] for i in range(4)]
        for i, rid in enumerate(ids):
            body = {"request_id": rid, "correct": i == 0}
            if i == 1:
                body["correction"] = "blue"
            assert httpx.post(f"{url}/v1/feedback", json=body, headers=headers).json()["stored"]
        missing = httpx.post(f"{url}/v1/feedback", json={"request_id": "cmpl-unknown", "correction": "x"},
                             headers=headers)
        assert missing.status_code == 404
        assert httpx.post(f"{url}/v1/feedback", json={"request_id": ids[0]}, headers=headers).status_code == 422
        event = received.get(timeout=10)
        assert event["metric"] == "online_accuracy" and event["value"] == 0.25
        time.sleep(0.3)
        s = _samples(httpx.get(f"{url}/metrics", headers=headers).text)
    assert s[("tailor_online_accuracy", ())] == 0.25
    rows = sqlite3.connect(tmp_path / "feedback.db").execute(
        "SELECT request_id, correct, correction, input FROM feedback ORDER BY id").fetchall()
    assert rows[1] == (ids[1], 0, "blue", "item 1 colour?") and rows[0][3] is None  # inputs kept only with corrections
