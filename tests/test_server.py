import socket
import subprocess
import sys
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(finished_run):
    _, run_dir = finished_run
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tailor.cli", "serve", str(run_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode() if proc.poll() else "timeout"
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)


def test_completion_matches_in_process_generation(server, finished_run):
    from tailor.inference import Generator

    _, run_dir = finished_run
    body = httpx.post(f"{server}/v1/completions", json={"prompt": "what colour is item 5", "max_tokens": 4}).json()
    expected = Generator(run_dir).complete("what colour is item 5", 4)
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == expected.text
    assert body["usage"]["completion_tokens"] == expected.completion_tokens
    assert httpx.get(f"{server}/health").json()["model"] == "tiny"


def test_bad_requests_get_4xx(server):
    assert httpx.post(f"{server}/v1/completions", json={"max_tokens": 4}).status_code == 422
    assert httpx.post(f"{server}/v1/completions", json={"prompt": "x", "max_tokens": 0}).status_code == 422
    too_long = "item " * 400
    res = httpx.post(f"{server}/v1/completions", json={"prompt": too_long})
    assert res.status_code == 422 and "reads at most" in res.json()["detail"]


def test_sampling_with_seed_is_repeatable(server):
    req = {"prompt": "what colour is item 1", "max_tokens": 4, "temperature": 1.0, "seed": 7}
    a = httpx.post(f"{server}/v1/completions", json=req).json()["choices"][0]["text"]
    b = httpx.post(f"{server}/v1/completions", json=req).json()["choices"][0]["text"]
    assert a == b
