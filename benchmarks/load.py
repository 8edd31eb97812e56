"""A bounded load above capacity on 127.0.0.1: the server must answer 429, never 5xx, keep every request
it accepted, keep its memory flat, and still serve what it can.

Capacity is max_batch + max_queue requests in the server at once; the load offers --clients
concurrent clients (more than that) for --seconds, each on a connection of its own, sending
completions back to back. A refused client waits as the 429's Retry-After says (whole seconds, the
server's estimate of when a place frees) before it asks again, as OpenAI's own client does; a 429
without Retry-After fails the check. The server's capacity in answers per second is measured in
the same run with max_batch clients (no refusals), --calibrate seconds before the load and again
after it; under the load it must answer 200 to at least 90% of what that rate allows in the window
(a server that refused everything, or answered 5xx, fails). One summary line at the end; exit 1 when
a check fails.

    python benchmarks/load.py [--clients 48] [--seconds 30] [--batch 8] [--queue 8] [--calibrate 8]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from harness import build_model, prompts, rss_mb, server  # noqa: E402


async def offer_load(url: str, headers: dict, clients: int, seconds: float, max_tokens: int) -> dict:
    """Clients that send requests back to back until the time is up; counts by outcome."""
    counts: collections.Counter = collections.Counter()
    texts = prompts(256, seed=2)
    deadline = time.monotonic() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            try:
                res = await http.post(f"{url}/v1/completions", headers=headers, json={
                    "prompt": texts[(i * 31 + n) % len(texts)], "max_tokens": max_tokens, "temperature": 0})
            except httpx.HTTPError as e:  # an accepted request that got no answer
                counts[f"transport:{type(e).__name__}"] += 1
                continue
            counts[res.status_code] += 1
            if res.status_code == 200 and res.json()["usage"]["completion_tokens"] != max_tokens:
                counts["short answer"] += 1
            if res.status_code == 429:
                retry = res.headers.get("retry-after", "")
                if not retry.isdigit():
                    counts["429 without Retry-After"] += 1
                    retry = "1"
                counts[f"Retry-After {retry}s"] += 1
                await asyncio.sleep(min(int(retry), max(deadline - time.monotonic(), 0)))

    tls = ssl.create_default_context()  # made once: each client making its own took 30 ms of CPU from the window

    async def connection(i: int) -> None:  # one client, one keep-alive connection: no pool shared by all of them
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=1), verify=tls) as http:
            await client(i, http)

    await asyncio.gather(*(connection(i) for i in range(clients)))
    return counts


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def capacity(url: str, headers: dict, clients: int, seconds: float, max_tokens: int, pid: int) -> tuple[float, float]:
    """Answers per second with `clients` (max_batch) in flight, none of them refused; and the server's CPU share."""
    start, cpu = time.perf_counter(), cpu_seconds(pid)
    counts = asyncio.run(offer_load(url, headers, clients, seconds, max_tokens))
    elapsed = time.perf_counter() - start
    if set(counts) - {200}:
        sys.exit(f"load: the capacity measurement with {clients} clients got {dict(counts)}, not only 200s")
    return counts[200] / elapsed, (cpu_seconds(pid) - cpu) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--calibrate", type=float, default=8, help="seconds of each capacity measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "model")
        spec = Path(tmp) / "spec.yaml"
        spec.write_text(yaml.safe_dump({
            "name": "load", "problem": {"domain": "load test", "task": "answer"},
            "data": {"sources": [{"type": "files", "path": str(folder)}]},
            "deploy": {"serve": {"limits": {"max_batch": args.batch, "max_queue": args.queue, "timeout": 60}}}}))
        with server(folder, Path(tmp) / "home", spec) as (url, headers, pid):
            asyncio.run(offer_load(url, headers, args.batch, 2, args.max_tokens))  # warm up below capacity
            rates = [capacity(url, headers, args.batch, args.calibrate, args.max_tokens, pid)]
            memory: list[float] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.5):
                    memory.append(rss_mb(pid))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            start, cpu = time.perf_counter(), cpu_seconds(pid)
            counts = asyncio.run(offer_load(url, headers, args.clients, args.seconds, args.max_tokens))
            elapsed = time.perf_counter() - start
            load_cpu = (cpu_seconds(pid) - cpu) / elapsed
            stop.set()
            sampler.join()
            rates.append(capacity(url, headers, args.batch, args.calibrate, args.max_tokens, pid))
    total = sum(v for k, v in counts.items() if isinstance(k, int) or k.startswith("transport:"))
    server_errors = sum(v for k, v in counts.items() if isinstance(k, int) and k >= 500)
    unanswered = sum(v for k, v in counts.items() if isinstance(k, str) and k.startswith("transport:"))
    quarter = max(1, len(memory) // 4)
    early, late = sum(memory[:quarter]) / quarter, sum(memory[-quarter:]) / quarter
    growth = (late - early) / early
    rate = statistics.mean(r for r, _ in rates)
    served = counts[200] / (rate * elapsed)
    verdict = "PASS" if (server_errors == unanswered == counts["short answer"] == counts["429 without Retry-After"] == 0
                         and growth < 0.1 and counts[429] and served >= 0.9) else "FAIL"
    print(f"load ({args.clients} clients for {elapsed:.0f}s against capacity {args.batch}+{args.queue}): "
          f"{total} requests, {counts[200]} answered 200 ({counts[200] / elapsed:.1f}/s), {counts[429]} refused 429 "
          f"({counts['429 without Retry-After']} without Retry-After; clients wait as it says: "
          f"{', '.join(f'{k} x{v}' for k, v in sorted(counts.items(), key=str) if str(k).startswith('Retry-After ')) or 'none'}), "
          f"{server_errors} 5xx, {unanswered} accepted but unanswered, other {dict((k, v) for k, v in counts.items() if k not in (200, 429) and not isinstance(k, str))}, "
          f"{counts['short answer']} cut short; served {100 * served:.0f}% of measured capacity "
          f"({rate:.1f} answers/s with {args.batch} clients, {' and '.join(f'{r:.1f}' for r, _ in rates)} before and after; "
          f"goal >= 90%; server busy {100 * load_cpu:.0f}% of a core under the load, "
          f"{100 * statistics.mean(c for _, c in rates):.0f}% at capacity); server memory {early:.0f} -> {late:.0f} MB ({100 * growth:+.1f}%, max {max(memory):.0f} MB): {verdict}")
    sys.exit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
