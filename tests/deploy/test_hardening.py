"""Capacity, deadlines and trust at the HTTP surface: streams refused before their first byte, hard stream
deadlines, sibling prompts cancelled, docs behind a key, feedback only for our own answers, platform mode
only on its platform."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tailor.deploy.auth import KeyStore
from tailor.deploy.server import create_app
from tailor.errors import TailorError
from tailor.spec.deploy import Limits, Serve

from .conftest import running


@contextlib.contextmanager
def slowed(app, seconds: float):
    """Each decoding step of the app's model takes `seconds` longer (a slow device), until the block ends."""
    backend = app.state.tailor.host.engine.backend
    step = backend.step

    def slow(state, ids):
        time.sleep(seconds)
        return step(state, ids)

    backend.step = slow
    try:
        yield
    finally:
        del backend.step


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _wait(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_stream_refused_for_capacity_is_a_429_before_any_byte(chatty_model, home, keys):
    app = create_app(chatty_model, Serve(limits=Limits(max_batch=1, max_queue=0)), home=home)
    engine = app.state.tailor.host.engine
    body = {"prompt": "x", "max_tokens": 40, "stream": True}
    with running(app) as url, slowed(app, 0.05):
        holder = threading.Thread(target=lambda: httpx.post(f"{url}/v1/completions", json=body,
                                                            headers=_auth(keys["infer"]), timeout=30))
        holder.start()
        assert _wait(lambda: engine.running == 1)
        for route, refused in (("/v1/completions", body), ("/v1/chat/completions", {
                "messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "stream": True})):
            res = httpx.post(f"{url}{route}", json=refused, headers=_auth(keys["infer"]))
            assert res.status_code == 429, (route, res.status_code, res.text[:200])
            assert res.headers["content-type"] == "application/json" and res.headers["retry-after"] == "1"
            assert res.json()["error"]["code"] == 429
        holder.join(30)


def test_a_stream_ends_at_its_deadline_with_a_504_event(chatty_model, home, keys):
    app = create_app(chatty_model, Serve(limits=Limits(timeout=0.8)), home=home)
    with running(app) as url, slowed(app, 0.1):  # 60 tokens would take 6 s
        start = time.monotonic()
        with httpx.stream("POST", f"{url}/v1/completions", headers=_auth(keys["infer"]), timeout=30,
                          json={"prompt": "x", "max_tokens": 60, "stream": True}) as res:
            assert res.status_code == 200
            events = [line.removeprefix("data: ") for line in res.iter_lines() if line.startswith("data: ")]
        took = time.monotonic() - start
        assert took < 0.8 + 0.6, took
        assert "[DONE]" not in events and json.loads(events[-1])["error"]["code"] == 504, events[-2:]
        assert _wait(lambda: app.state.tailor.host.engine.running == 0, 1)  # and its batch slot is free
        metrics = httpx.get(f"{url}/metrics", headers=_auth(keys["admin"])).text
        assert 'tailor_request_errors_total{code="504",route="/v1/completions"} 1.0' in metrics


def test_when_one_prompt_is_refused_its_siblings_are_cancelled(chatty_model, home, keys):
    app = create_app(chatty_model, Serve(limits=Limits(max_batch=1, max_queue=1)), home=home)
    engine = app.state.tailor.host.engine
    with running(app) as url, slowed(app, 0.1):  # 30 tokens would take 3 s
        res = httpx.post(f"{url}/v1/completions", headers=_auth(keys["infer"]), timeout=30,
                         json={"prompt": ["item 1", "item 2", "item 3"], "max_tokens": 30})
        assert res.status_code == 429
        assert _wait(lambda: engine.running + engine.queue_depth == 0, 1.0), (engine.running, engine.queue_depth)


def test_docs_are_off_by_default_and_behind_a_key_when_on(chatty_model, home, keys, served_chatty):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(f"{served_chatty.url}{path}").status_code == 404
        assert httpx.get(f"{served_chatty.url}{path}", headers=_auth(keys["infer"])).status_code == 404
    with running(create_app(chatty_model, Serve(docs=True), home=home)) as url:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(f"{url}{path}").status_code == 401, path
            assert httpx.get(f"{url}{path}", headers=_auth(keys["infer"])).status_code == 200, path
        schema = httpx.get(f"{url}/openapi.json", headers=_auth(keys["infer"])).json()
        assert '"/v1/completions"' in httpx.get(f"{url}/docs", headers=_auth(keys["infer"])).text  # schema inline
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "an API key from `tailor keys create`"}
    completions = schema["paths"]["/v1/completions"]["post"]
    assert completions["security"] == [{"HTTPBearer": []}]
    assert {"401", "403", "413", "422", "429", "504"} <= set(completions["responses"])
    assert "security" not in schema["paths"]["/health"]["get"]


def test_feedback_only_for_this_servers_answers_and_from_the_key_that_got_them(served_chatty, keys, home):
    url, mine, other = served_chatty.url, _auth(keys["infer"]), _auth(KeyStore(home / "keys.db").create(
        "someone-else", ["infer"])[1])
    answer = httpx.post(f"{url}/v1/completions", headers=mine, json={"prompt": "x", "max_tokens": 2}).json()
    for forged in ("cmpl-0123456789abcdef01234567", "made-up"):
        res = httpx.post(f"{url}/v1/feedback", headers=mine, json={"request_id": forged, "correct": False})
        assert res.status_code == 404 and "not among the answers" in res.json()["error"]["message"]
        res = httpx.post(f"{url}/v1/feedback", headers=mine, json={"request_id": forged, "correction": "y"})
        assert res.status_code == 404
    res = httpx.post(f"{url}/v1/feedback", headers=other, json={"request_id": answer["id"], "correct": False})
    assert res.status_code == 403 and "another key" in res.json()["error"]["message"]
    res = httpx.post(f"{url}/v1/feedback", headers=mine, json={"request_id": answer["id"], "correct": True})
    assert res.status_code == 200 and res.json()["stored"]
    stream = httpx.post(f"{url}/v1/chat/completions", headers=mine,
                        json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "stream": True})
    chat_id = json.loads(stream.text.split("\n")[0].removeprefix("data: "))["id"]
    assert httpx.post(f"{url}/v1/feedback", headers=mine, json={"request_id": chat_id, "rating": 4}).status_code == 200


def test_platform_mode_refuses_to_start_outside_its_platform(chatty_model, tmp_path, monkeypatch):
    for name in ("SAGEMAKER_BIND_TO_PORT", "AIP_HTTP_PORT", "AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE", "AZUREML_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    for platform, missing in (("sagemaker", "SAGEMAKER_BIND_TO_PORT"), ("vertex", "AIP_HTTP_PORT"),
                              ("azure", "AZUREML_MODEL_DIR")):
        with pytest.raises(TailorError, match=f"{missing}.*not set.*--allow-outside-platform"):
            create_app(chatty_model, Serve(platform=platform), home=tmp_path)
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "serve", str(chatty_model), "--platform", "azure",
                          "--home", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "AZUREML_MODEL_DIR" in res.stderr and "Traceback" not in res.stderr


def test_platform_mode_outside_its_platform_warns_and_rate_limits(chatty_model, tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("SAGEMAKER_BIND_TO_PORT", raising=False)
    serve = Serve(platform="sagemaker", allow_outside_platform=True, limits=Limits(burst=3, platform_rate_limit=0.5))
    with caplog.at_level("WARNING", logger="tailor.serve"):
        app = create_app(chatty_model, serve, home=tmp_path)
    assert "anyone who reaches" in caplog.text and "0.5 requests/s per client address" in caplog.text
    with running(app) as url:
        codes = [httpx.post(f"{url}/invocations", json={"inputs": "x", "parameters": {"max_new_tokens": 1}}).status_code
                 for _ in range(5)]
        assert codes[:3] == [200] * 3 and codes[3:] == [429, 429], codes
        assert httpx.get(f"{url}/ping").status_code == 200  # the health check is not limited


def test_a_full_engine_refuses_at_the_door_with_its_estimate_but_never_tells_a_keyless_client(chatty_model, home,
                                                                                              keys):
    app = create_app(chatty_model, Serve(limits=Limits(max_batch=1, max_queue=0)), home=home)
    engine = app.state.tailor.host.engine
    body = {"prompt": "x", "max_tokens": 30}

    def hold() -> threading.Thread:
        holder = threading.Thread(target=lambda: httpx.post(f"{url}/v1/completions", json=body,
                                                            headers=_auth(keys["infer"]), timeout=30))
        holder.start()
        assert _wait(lambda: engine.running == 1)
        return holder

    with running(app) as url, slowed(app, 0.05):  # 30 tokens take 1.5 s
        holder = hold()
        # a body the route would answer 422 is refused first: at capacity nothing is parsed
        res = httpx.post(f"{url}/v1/completions", content=b'{"prompt": ', headers={
            **_auth(keys["infer"]), "Content-Type": "application/json"})
        assert res.status_code == 429 and res.json()["error"]["code"] == 429, (res.status_code, res.text[:200])
        assert res.headers["retry-after"] == "1"  # nothing has finished yet: no estimate but the least
        for headers in ({}, _auth("tlr_0123456789ab_forged")):  # without a valid key: 401, as when idle
            assert httpx.post(f"{url}/v1/completions", json=body, headers=headers).status_code == 401
        holder.join(30)
        holder = hold()  # one request took about 1.5 s: the next place frees in about that
        res = httpx.post(f"{url}/v1/chat/completions", headers=_auth(keys["infer"]),
                         json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 4})
        assert res.status_code == 429 and int(res.headers["retry-after"]) >= 2, res.headers
        holder.join(30)
        metrics = httpx.get(f"{url}/metrics", headers=_auth(keys["admin"])).text
    assert 'tailor_requests_total{code="429",route="/v1/completions"} 1.0' in metrics
    assert 'tailor_requests_total{code="429",route="/v1/chat/completions"} 1.0' in metrics
