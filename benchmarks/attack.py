"""A bounded attack on `tailor serve` over 127.0.0.1 (well under 60 s of traffic): slow and idle clients, big
prompts while /health is timed, undecodable and deeply nested input, streams above capacity, forged
feedback. Every check must hold; one summary line; non-zero exit when one does not.

    python benchmarks/attack.py
"""

from __future__ import annotations

import concurrent.futures
import select
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from harness import build_model, server  # noqa: E402

HEAD_S, BODY_S = 2.0, 2.0  # the server's header and body deadlines in this run
LIMITS = {"max_batch": 2, "max_queue": 0, "timeout": 10}
BIG = "what colour is the drill today " * 29_000  # 900 KB


def until_closed(url: str, first: bytes, trickle: bytes, limit: float = 15.0) -> float:
    """Open a connection, send `first`, then `trickle` a byte every 0.2 s; seconds until the server closed it."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(first)
    sock.setblocking(False)
    start, sent = time.monotonic(), 0
    try:
        while time.monotonic() - start < limit:
            try:
                if sent < len(trickle):
                    sent += sock.send(trickle[sent:sent + 1])
                if select.select([sock], [], [], 0.2)[0] and not sock.recv(65536):
                    break
            except (BrokenPipeError, ConnectionResetError):
                break
        return time.monotonic() - start
    finally:
        sock.close()


def slow_clients(url: str) -> tuple[int, int, float]:
    """3 of each: silent, headers a byte at a time, a body a byte at a time (no key), a chunked body slowly."""
    post = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    kinds = [(b"", b""), (b"", post + b"X-Pad: " + b"a" * 200), (post + b"Content-Length: 900\r\n\r\n", b"x" * 900),
             (post + b"Transfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n" * 200)]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        took = list(pool.map(lambda k: until_closed(url, *k), kinds * 3))
    cut = sum(t < max(HEAD_S, BODY_S) + 2 for t in took)
    return cut, len(took), max(took)


def health_under_big_prompts(url: str, headers: dict, seconds: float = 8.0) -> tuple[float, float, list[int]]:
    """(idle /health seconds, worst /health seconds while 4 clients send 900 KB prompts, their codes)."""
    with httpx.Client(timeout=30) as c:
        idle = min(_timed(lambda: c.get(f"{url}/health")) for _ in range(5))
    stop, codes = time.monotonic() + seconds, []

    def hammer() -> None:
        with httpx.Client(timeout=60) as c:
            while time.monotonic() < stop:
                codes.append(c.post(f"{url}/v1/completions", headers=headers,
                                    json={"prompt": BIG, "max_tokens": 1}).status_code)

    worst = 0.0
    with concurrent.futures.ThreadPoolExecutor(4) as pool, httpx.Client(timeout=30) as c:
        jobs = [pool.submit(hammer) for _ in range(4)]
        while time.monotonic() < stop:
            worst = max(worst, _timed(lambda: c.get(f"{url}/health").raise_for_status()))
            time.sleep(0.05)
        for job in jobs:
            job.result()
    return idle, worst, codes


def _timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def hostile_bodies(url: str, headers: dict) -> list[int]:
    """Lone surrogates where text goes, and JSON nested far deeper than any body needs."""
    deep = "[" * 200_000 + "]" * 200_000
    bodies = [("/v1/completions", '{"prompt": "\\ud800", "max_tokens": 1}'),
              ("/v1/completions", '{"prompt": "x", "max_tokens": 1, "stop": "\\udfff"}'),
              ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "a\\ud83d"}]}'),
              ("/v1/classify", '{"input": ["\\ud800"]}'),
              ("/v1/feedback", '{"request_id": "\\ud800", "rating": 1}'),
              ("/v1/completions", '{"prompt": ' + deep + "}")]
    h = {**headers, "Content-Type": "application/json"}
    return [httpx.post(f"{url}{route}", content=body.encode(), headers=h, timeout=30).status_code
            for route, body in bodies]


def streams_at_capacity(url: str, headers: dict, n: int = 8) -> dict[str, int]:
    """n concurrent streams against capacity 2: each is a whole stream ending [DONE], or a 429 before any byte."""
    def one(i: int) -> str:
        body = {"prompt": f"item {i} please", "max_tokens": 200, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", headers=headers, json=body, timeout=60) as res:
            if res.status_code == 429:
                return "429" if res.headers["content-type"] == "application/json" else "429 not JSON"
            lines = [x for x in res.iter_lines() if x.startswith("data: ")]
            return "whole" if res.status_code == 200 and lines and lines[-1] == "data: [DONE]" else "broken"

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        outcomes = list(pool.map(one, range(n)))
    return {k: outcomes.count(k) for k in set(outcomes)}


def forged_feedback(url: str, headers: dict, other: dict) -> tuple[int, int]:
    """(refused, tried): ids never issued, and a real id from a key that did not receive it; then one honest."""
    real = httpx.post(f"{url}/v1/completions", headers=headers, json={"prompt": "x", "max_tokens": 2}).json()["id"]
    tries = [(headers, "cmpl-000000000000000000000000", 404), (headers, "anything", 404),
             (other, real, 403), (other, "cmpl-ffffffffffffffffffffffff", 404)]
    refused = sum(httpx.post(f"{url}/v1/feedback", headers=h, json={"request_id": rid, "correct": False}).status_code
                  == code for h, rid, code in tries)
    honest = httpx.post(f"{url}/v1/feedback", headers=headers, json={"request_id": real, "correct": True})
    return refused + (honest.status_code == 200), len(tries) + 1


def counted_5xx(url: str, admin: dict) -> int:
    text = httpx.get(f"{url}/metrics", headers=admin).text
    return int(sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines()
                   if x.startswith("tailor_request_errors_total{") and 'code="5' in x))


def main() -> None:
    from tailor.deploy.auth import KeyStore

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "model", n_layer=2, n_embd=64, block_size=256)
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(yaml.safe_dump({
            "name": "attack", "problem": {"domain": "attack test", "task": "answer"},
            "data": {"sources": [{"type": "files", "path": str(folder)}]},
            "deploy": {"serve": {"limits": LIMITS, "connections": {"header_timeout": HEAD_S, "body_timeout": BODY_S,
                                                                   "keep_alive": 1}}}}))
        home = Path(tmp) / "home"
        with server(folder, home, spec) as (url, headers, _):
            store = KeyStore(home / "keys.db")
            other = {"Authorization": f"Bearer {store.create('other', ['infer'])[1]}"}
            admin = {"Authorization": f"Bearer {store.create('ops', ['admin'])[1]}"}
            start = time.monotonic()
            cut, opened, slowest = slow_clients(url)
            idle, worst, big_codes = health_under_big_prompts(url, headers)
            hostile = hostile_bodies(url, headers)
            streams = streams_at_capacity(url, headers)
            refused, tried = forged_feedback(url, headers, other)
            traffic = time.monotonic() - start
            five = counted_5xx(url, admin)
    seen = sum(c >= 500 for c in hostile + big_codes)
    checks = {"slow clients cut": cut == opened, "/health under load < 1 s": worst < 1.0,
              "big prompts 422": set(big_codes) == {422}, "hostile bodies 4xx": all(400 <= c < 500 for c in hostile),
              "streams whole or 429": set(streams) <= {"whole", "429"} and streams.get("429", 0) > 0,
              "forged feedback refused": refused == tried, "no 5xx, every one counted": five == seen == 0, "traffic <= 60 s": traffic <= 60}
    failed = [name for name, ok in checks.items() if not ok]
    print(f"attack ({traffic:.0f}s of traffic on 127.0.0.1): slow clients {cut}/{opened} cut off (slowest "
          f"{slowest:.1f}s; deadlines {HEAD_S:g}s head, {BODY_S:g}s body); /health {1000 * idle:.0f} ms idle, worst "
          f"{1000 * worst:.0f} ms under 4 clients of 900 KB prompts ({len(big_codes)} refused {sorted(set(big_codes))}); "
          f"surrogates and 200k-deep JSON {hostile}; {sum(streams.values())} streams at capacity 2: {streams}; forged "
          f"feedback {refused}/{tried} answered right; 5xx seen {seen}, counted {five}: "
          f"{'PASS' if not failed else 'FAIL (' + ', '.join(failed) + ')'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
