"""Limits: body size (413), token lengths (422), a bounded queue and per-key rates (429), timeouts (504)."""

from __future__ import annotations

import concurrent.futures

import httpx
import pytest

from tailor.deploy.auth import KeyStore
from tailor.deploy.server import create_app
from tailor.spec.deploy import Limits, Serve

from .conftest import running


@pytest.fixture(scope="module")
def limited(chatty_model, home):
    limits = Limits(max_input_tokens=8, max_total_tokens=40, max_body=4000, max_batch=1, max_queue=1,
                    rate_limit=0.05, burst=4)  # one request back per 20 s: a slow machine cannot refill the bucket
    with running(create_app(chatty_model, Serve(limits=limits), home=home)) as url:
        yield url


def _key(home, name="limits") -> dict:
    return {"Authorization": f"Bearer {KeyStore(home / 'keys.db').create(name, ['infer'])[1]}"}


def test_payload_too_large_gets_413_with_or_without_content_length(limited, home):
    headers = _key(home)
    big = {"prompt": "x", "max_tokens": 1, "user": "y" * 5000}
    res = httpx.post(f"{limited}/v1/completions", json=big, headers=headers)
    assert res.status_code == 413 and "4000 bytes" in res.json()["error"]["message"]

    def chunks():
        yield b'{"prompt": "x", "user": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    res = httpx.post(f"{limited}/v1/completions", content=chunks(), headers={**headers, "Content-Type": "application/json"})
    assert res.status_code == 413
    assert httpx.post(f"{limited}/v1/completions", json={"prompt": "x", "max_tokens": 1}, headers=headers).status_code == 200


def test_too_many_tokens_get_422_saying_what_is_allowed(limited, home):
    headers = _key(home)
    res = httpx.post(f"{limited}/v1/completions", json={"prompt": "what colour is item 5 today", "max_tokens": 1},
                     headers=headers)
    assert res.status_code == 422 and "at most 8 are allowed" in res.json()["error"]["message"]
    res = httpx.post(f"{limited}/v1/completions", json={"prompt": "x", "max_tokens": 39}, headers=headers)
    assert res.status_code == 422 and "40 tokens allowed" in res.json()["error"]["message"]
    res = httpx.post(f"{limited}/v1/chat/completions", headers=headers,
                     json={"messages": [{"role": "user", "content": "x"}]})  # no max_tokens: up to the total
    assert res.status_code == 200 and res.json()["usage"]["total_tokens"] <= 40


def test_a_full_queue_answers_429_and_every_accepted_request_completes(limited, home):
    keys = [_key(home, f"q{i}") for i in range(8)]  # one key each, so the rate limit is not what refuses

    def ask(headers):
        return httpx.post(f"{limited}/v1/completions", json={"prompt": "x", "max_tokens": 35}, headers=headers,
                          timeout=60)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(ask, keys))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 2, codes
    assert all(r.json()["usage"]["completion_tokens"] == 35 for r in responses if r.status_code == 200)
    assert all(r.headers["retry-after"] for r in responses if r.status_code == 429)


def test_rate_limit_per_key(limited, home):
    a, b = _key(home, "a"), _key(home, "b")
    codes = [httpx.get(f"{limited}/v1/models", headers=a).status_code for _ in range(6)]
    assert codes[:4] == [200] * 4 and 429 in codes[4:]
    refused = httpx.get(f"{limited}/v1/models", headers=a)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert httpx.get(f"{limited}/v1/models", headers=b).status_code == 200  # another key is not affected


def test_requests_over_the_time_limit_get_504(chatty_model, home):
    with running(create_app(chatty_model, Serve(limits=Limits(timeout=0.001)), home=home)) as url:
        res = httpx.post(f"{url}/v1/completions", json={"prompt": "x", "max_tokens": 50}, headers=_key(home, "t"))
        assert res.status_code == 504 and "no answer within" in res.json()["error"]["message"]
        assert httpx.get(f"{url}/ready").status_code == 200  # and it keeps serving
