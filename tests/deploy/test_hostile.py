"""Hostile clients against a real server on 127.0.0.1: slow or idle connections are cut off, big prompts do not
stall the event loop, undecodable text is a 422 and every 5xx is a counted JSON answer."""

from __future__ import annotations

import concurrent.futures
import contextlib
import select
import socket
import time

import httpx
import pytest

from tailor.deploy.server import create_app
from tailor.spec.deploy import Alert, Connections, Limits, Serve

from .conftest import running, served_apart

QUICK = Connections(header_timeout=1.5, body_timeout=1, keep_alive=0.5, max_connections=64)


@pytest.fixture(scope="module")
def guarded(chatty_model, home):
    with served_apart(chatty_model, Serve(connections=QUICK), home) as url:
        yield url


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.setblocking(False)
    return sock


def _until_closed(sock: socket.socket, limit: float, feed: bytes = b"", every: float = 0.2) -> tuple[float, bytes]:
    """Send `feed` a byte every `every` seconds and read whatever comes back, until the server closes the
    connection; (seconds it took, the bytes received). Fails after `limit` seconds with the connection open."""
    start, got, sent = time.monotonic(), b"", 0
    while time.monotonic() - start < limit:
        if sent < len(feed):
            try:
                sock.send(feed[sent:sent + 1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start, got
        ready, _, _ = select.select([sock], [], [], every)
        if ready:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return time.monotonic() - start, got
            if not data:
                return time.monotonic() - start, got
            got += data
    raise AssertionError(f"still open after {limit}s (sent {sent} bytes, received {got[:200]!r})")


def test_a_client_that_sends_nothing_is_cut_off(guarded):
    with contextlib.closing(_connect(guarded)) as sock:
        took, _ = _until_closed(sock, 6)
    assert 1.4 < took < 3, took


def test_headers_sent_slowly_are_cut_off(guarded):
    head = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200
    with contextlib.closing(_connect(guarded)) as sock:
        took, _ = _until_closed(sock, 6, head)
    assert took < 3, took


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_sent_slowly_without_a_key_gets_408_and_is_cut_off(guarded, framing):
    if framing == "chunked":
        head, body = b"Transfer-Encoding: chunked\r\n", b"1\r\nx\r\n" * 100
    else:
        head, body = b"Content-Length: 1000\r\n", b"x" * 1000
    with contextlib.closing(_connect(guarded)) as sock:
        sock.setblocking(True)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + head
                     + b"\r\n")
        sock.setblocking(False)
        took, answer = _until_closed(sock, 6, body)
    assert took < 2.5, took
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1s" in answer, answer[:300]


def test_an_idle_kept_alive_connection_is_closed(guarded):
    with contextlib.closing(_connect(guarded)) as sock:
        sock.setblocking(True)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        sock.setblocking(False)
        took, answer = _until_closed(sock, 6)
    assert answer.startswith(b"HTTP/1.1 200") and took < 1.2, (took, answer[:100])  # keep_alive, not the head's


def test_connections_beyond_the_cap_and_heads_beyond_their_size_are_refused(chatty_model, home):
    capped = Serve(connections=Connections(header_timeout=5, max_connections=3, max_header_size="2KB"))
    with served_apart(chatty_model, capped, home) as url:
        assert httpx.get(f"{url}/health", headers={"X-Padding": "a" * 1000}).status_code == 200
        with contextlib.closing(_connect(url)) as sock:  # a head that grows past its bound, never finished
            sock.setblocking(True)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 4000)
            sock.setblocking(False)
            took, answer = _until_closed(sock, 6)
        assert answer.startswith(b"HTTP/1.1 400") and took < 1, (took, answer[:100])
        idle = [_connect(url) for _ in range(3)]
        try:
            time.sleep(0.2)
            assert httpx.get(f"{url}/health").status_code == 503
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.2)
        assert httpx.get(f"{url}/health").status_code == 200


def _health_under_load(url: str, headers: dict, prompt: str, seconds: float = 4.0) -> tuple[float, list[int]]:
    """The slowest /health while 4 clients send `prompt` over and over; (seconds, the codes the prompts got)."""
    stop, codes = time.monotonic() + seconds, []

    def hammer() -> None:
        with httpx.Client(timeout=60) as client:
            while time.monotonic() < stop:
                codes.append(client.post(f"{url}/v1/completions", headers=headers,
                                         json={"prompt": prompt, "max_tokens": 1}).status_code)

    worst = 0.0
    with concurrent.futures.ThreadPoolExecutor(4) as pool, httpx.Client(timeout=30) as client:
        futures = [pool.submit(hammer) for _ in range(4)]
        time.sleep(0.3)  # the big bodies are on their way
        while time.monotonic() < stop:
            t = time.monotonic()
            assert client.get(f"{url}/health").status_code == 200
            worst = max(worst, time.monotonic() - t)
            time.sleep(0.05)
        for f in futures:
            f.result()
    return worst, codes


def test_big_prompts_are_refused_by_length_before_tokenizing_and_health_stays_fast(chatty_model, home, keys):
    headers, big = {"Authorization": f"Bearer {keys['infer']}"}, "what colour is item 5 today " * 32_000  # 900 KB
    with served_apart(chatty_model, Serve(limits=Limits(max_body="2MB")), home) as url:
        res = httpx.post(f"{url}/v1/completions", headers=headers, json={"prompt": big, "max_tokens": 1}, timeout=30)
        assert res.status_code == 422 and "characters; at most" in res.json()["error"]["message"]
        worst, codes = _health_under_load(url, headers, big)
    assert set(codes) == {422} and worst < 1.5, (worst, len(codes))
    # allowed that long by characters, the prompts are tokenized off the event loop (and then refused by tokens)
    loose = Serve(limits=Limits(max_body="2MB", max_input_chars=2_000_000))
    with served_apart(chatty_model, loose, home) as url:
        res = httpx.post(f"{url}/v1/completions", headers=headers, json={"prompt": big, "max_tokens": 1}, timeout=30)
        assert res.status_code == 422 and "tokens; at most" in res.json()["error"]["message"]
        worst, codes = _health_under_load(url, headers, big)
    assert set(codes) == {422} and worst < 1.5, (worst, len(codes))


@pytest.mark.parametrize("route,body", [
    ("/v1/completions", '{"prompt": "\\ud800", "max_tokens": 1}'),
    ("/v1/completions", '{"prompt": ["ok", "x\\udfffy"], "max_tokens": 1}'),
    ("/v1/completions", '{"prompt": "ok", "max_tokens": 1, "stop": ["\\ud800"]}'),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "\\ud83d"}], "max_tokens": 1}'),
    ("/v1/classify", '{"input": "\\ud800"}'),
    ("/v1/feedback", '{"request_id": "\\ud800", "rating": 1}'),
], ids=["prompt", "prompt-list", "stop", "chat", "classify", "feedback"])
def test_a_lone_surrogate_is_a_422_json_error(served_chatty, keys, route, body):
    res = httpx.post(f"{served_chatty.url}{route}", content=body.encode(),
                     headers={"Authorization": f"Bearer {keys['infer']}", "Content-Type": "application/json"})
    assert res.status_code == 422, (res.status_code, res.text[:300])
    message = res.json()["error"]["message"]
    assert "surrogate" in message or "unicode" in message, message


def _errors(url: str, admin: str, code: str, route: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    line = next((x for x in text.splitlines() if x.startswith("tailor_request_errors_total{")
                 and f'code="{code}"' in x and f'route="{route}"' in x), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


def test_an_unhandled_error_is_a_counted_json_500(chatty_model, home, keys):
    app = create_app(chatty_model, home=home)
    fmt = app.state.tailor.host.engine.backend.format
    encode = fmt.encode_prompt
    fmt.encode_prompt = lambda text: 1 / 0 if text == "boom" else encode(text)  # a fault in the server's own code
    headers = {"Authorization": f"Bearer {keys['infer']}"}
    with running(app) as url:
        for _ in range(3):
            res = httpx.post(f"{url}/v1/completions", headers=headers, json={"prompt": "boom", "max_tokens": 1})
            assert res.status_code == 500 and res.json()["error"]["type"] == "server_error", res.text[:300]
            assert "ZeroDivisionError" not in res.text  # no traceback to the client
        assert httpx.post(f"{url}/v1/completions", headers=headers, json={"prompt": "x", "max_tokens": 1}).status_code == 200
        assert _errors(url, keys["admin"], "500", "/v1/completions") == 3
        rule = Alert(metric="error_rate", above=0.5, min_count=2)
        assert app.state.tailor.alerter.value(rule) == pytest.approx(0.75)


def test_an_engine_failure_is_a_counted_json_500(chatty_model, home, keys):
    app = create_app(chatty_model, home=home)
    backend = app.state.tailor.host.engine.backend

    def broken(state, ids):
        raise RuntimeError("device lost")

    headers = {"Authorization": f"Bearer {keys['infer']}"}
    with running(app) as url:
        backend.step = broken
        res = httpx.post(f"{url}/v1/completions", headers=headers, json={"prompt": "x", "max_tokens": 5})
        assert res.status_code == 500 and res.json()["error"]["type"] == "server_error"
        del backend.step
        assert httpx.post(f"{url}/v1/completions", headers=headers, json={"prompt": "x", "max_tokens": 5}).status_code == 200
        assert _errors(url, keys["admin"], "500", "/v1/completions") == 1
