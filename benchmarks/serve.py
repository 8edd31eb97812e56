"""Serving throughput and latency at concurrency 1, 4 and 16 against sequential generate() on the same model.

The baseline is the model's own `generate()` (KV cache, one prompt at a time) in this process;
the server is `tailor serve` on 127.0.0.1, driven over HTTP. Both make the same number of tokens
(greedy, end-of-text suppressed). Medians of --repeats runs. One summary line at the end.

    python benchmarks/serve.py [--prompts 48] [--max-tokens 32] [--repeats 3] [--layers 6 --embd 384] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import build_model, prompts, server  # noqa: E402


def sequential_generate(folder: Path, texts: list[str], max_tokens: int) -> float:
    """Tokens per second of generate(), one prompt after another."""
    from tailor.inference import Generator

    gen = Generator(folder)
    start, tokens = time.perf_counter(), 0
    for text in texts:
        ids = gen.encode_prompt(text)
        out = gen.model.generate(torch.tensor([ids]), max_tokens)
        tokens += out.shape[1] - len(ids)
    return tokens / (time.perf_counter() - start)


async def drive(url: str, headers: dict, texts: list[str], max_tokens: int, concurrency: int) -> dict:
    """Send every prompt with `concurrency` in flight; tokens/s and latency percentiles."""
    queue: asyncio.Queue = asyncio.Queue()
    for t in texts:
        queue.put_nowait(t)
    latencies, tokens = [], 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        while not queue.empty():
            text = queue.get_nowait()
            start = time.perf_counter()
            res = await client.post(f"{url}/v1/completions", headers=headers,
                                    json={"prompt": text, "max_tokens": max_tokens, "temperature": 0})
            res.raise_for_status()
            latencies.append(time.perf_counter() - start)
            tokens += res.json()["usage"]["completion_tokens"]

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=64)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"tok_s": tokens / elapsed, "p50": 1000 * statistics.median(latencies),
            "p95": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--embd", type=int, default=384)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both sides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # on a shared 2-core machine, more threads than idle cores spin
    texts = prompts(args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "model", n_layer=args.layers, n_embd=args.embd, n_head=args.embd // 64)
        base, runs = [], {1: [], 4: [], 16: []}
        with server(folder, Path(tmp) / "home", threads=args.threads) as (url, headers, _):
            asyncio.run(drive(url, headers, texts[:4], args.max_tokens, 4))  # warm up
            for _ in range(args.repeats):
                base.append(sequential_generate(folder, texts, args.max_tokens))  # the server sits idle meanwhile
                for c in runs:
                    runs[c].append(asyncio.run(drive(url, headers, texts, args.max_tokens, c)))
    baseline = statistics.median(base)
    parts = []
    for c, results in runs.items():
        tok_s = statistics.median(r["tok_s"] for r in results)
        parts.append(f"c={c}: {tok_s:.0f} tok/s ({tok_s / baseline:.2f}x) p50 {statistics.median(r['p50'] for r in results):.0f} ms "
                     f"p95 {statistics.median(r['p95'] for r in results):.0f} ms")
    ratio16 = statistics.median(r["tok_s"] for r in runs[16]) / baseline
    print(f"serve ({args.layers}x{args.embd} GPT-2 shape, {args.prompts} prompts x {args.max_tokens} tokens, "
          f"{args.threads} torch thread(s), median of {args.repeats}): sequential generate() {baseline:.0f} tok/s; " + "; ".join(parts) +
          f"; at 16: {ratio16:.2f}x sequential generate() (goal >= 3x: {'met' if ratio16 >= 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
