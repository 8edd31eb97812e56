"""Serving throughput and latency at concurrency 1, 4 and 16 against sequential generate() on the same model.

The baseline is the model's own `generate()` (KV cache, one prompt at a time) in this process;
the server is `tailor serve` on 127.0.0.1, driven over HTTP. Both make the same number of tokens
(greedy, end-of-text suppressed). Medians of --repeats runs. Concurrency 1 is a line of its own
(a lone client gains nothing from batching, so it shows what the batching engine and HTTP cost
it); the summary line follows.

The check (exit 1 when it fails): every answer the server gave, at every concurrency, is the text
of sequential greedy generate()'s tokens for that prompt, and the batching engine itself (in this
process, all prompts submitted at once, batches of 16) makes the same token ids, token for token.

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


def sequential_generate(folder: Path, texts: list[str], max_tokens: int) -> tuple[float, list[list[int]]]:
    """Tokens per second of generate(), one prompt after another, and each prompt's new token ids."""
    from tailor.inference import Generator

    gen = Generator(folder)
    start, tokens, answers = time.perf_counter(), 0, []
    for text in texts:
        ids = gen.encode_prompt(text)
        out = gen.model.generate(torch.tensor([ids]), max_tokens)
        answers.append(out[0, len(ids):].tolist())
        tokens += out.shape[1] - len(ids)
    return tokens / (time.perf_counter() - start), answers


def engine_tokens(folder: Path, texts: list[str], max_tokens: int, max_batch: int = 16) -> list[list[int]]:
    """Each prompt's token ids from the batching engine the server runs, every prompt submitted at once."""
    import threading

    from tailor.inference.backends import TailorBackend
    from tailor.inference.engine import Engine, GenRequest

    backend = TailorBackend(folder)
    engine = Engine(backend, max_batch=max_batch, max_queue=len(texts))
    done = threading.Semaphore(0)
    requests = [GenRequest(backend.format.encode_prompt(t), max_tokens,
                           lambda kind, value: done.release() if kind in ("done", "error") else None) for t in texts]
    for req in requests:
        if engine.submit(req) != "ok":
            raise SystemExit("serve: the engine refused a request")
    for _ in requests:
        done.acquire()
    engine.drain(10)
    return [req.out for req in requests]


async def drive(url: str, headers: dict, texts: list[str], max_tokens: int, concurrency: int) -> dict:
    """Send every prompt with `concurrency` in flight; tokens/s and latency percentiles."""
    queue: asyncio.Queue = asyncio.Queue()
    for t in texts:
        queue.put_nowait(t)
    latencies, tokens, answers = [], 0, {}

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
            answers[text] = res.json()["choices"][0]["text"]

    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=64)) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"tok_s": tokens / elapsed, "p50": 1000 * statistics.median(latencies),
            "p95": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], "answers": answers}


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
        from tailor.inference import PromptFormat

        decode = PromptFormat(folder).decode
        base, runs, reference = [], {1: [], 4: [], 16: []}, None
        with server(folder, Path(tmp) / "home", threads=args.threads) as (url, headers, _):
            asyncio.run(drive(url, headers, texts[:4], args.max_tokens, 4))  # warm up
            for _ in range(args.repeats):
                rate, reference = sequential_generate(folder, texts, args.max_tokens)  # the server sits idle meanwhile
                base.append(rate)
                for c in runs:
                    runs[c].append(asyncio.run(drive(url, headers, texts, args.max_tokens, c)))
        batched = engine_tokens(folder, texts, args.max_tokens)
    expected = {t: decode(ids) for t, ids in zip(texts, reference)}
    text_mismatches = sum(r["answers"].get(t) != expected[t] for results in runs.values() for r in results for t in texts)
    token_mismatches = sum(a != b for a, b in zip(batched, reference))
    ok = text_mismatches == token_mismatches == 0
    baseline = statistics.median(base)
    parts, ratio = [], {}
    for c, results in runs.items():
        tok_s = statistics.median(r["tok_s"] for r in results)
        ratio[c] = tok_s / baseline
        parts.append(f"c={c}: {tok_s:.0f} tok/s ({ratio[c]:.2f}x) p50 {statistics.median(r['p50'] for r in results):.0f} ms "
                     f"p95 {statistics.median(r['p95'] for r in results):.0f} ms")
    print(f"serve, concurrency 1 (one client, no batching to gain): {parts[0]} of sequential generate() "
          f"{baseline:.0f} tok/s (goal >= 1.0x: {'met' if ratio[1] >= 1 else 'NOT met'})", file=sys.stderr)
    print(f"serve ({args.layers}x{args.embd} GPT-2 shape, {args.prompts} prompts x {args.max_tokens} tokens, "
          f"{args.threads} torch thread(s), median of {args.repeats}): sequential generate() {baseline:.0f} tok/s; "
          + "; ".join(parts) + f"; goals c=1 >= 1x {'met' if ratio[1] >= 1 else 'NOT met'}, c=16 >= 5x "
          f"{'met' if ratio[16] >= 5 else 'NOT met'}; answers equal to sequential greedy: "
          f"{sum(len(r) for r in runs.values()) * len(texts) - text_mismatches} of {sum(len(r) for r in runs.values()) * len(texts)} "
          f"over HTTP, {len(texts) - token_mismatches} of {len(texts)} token for token from the engine at batch 16 "
          f"(check: {'PASS' if ok else 'FAIL'})")
    sys.exit(0 if ok else 1)

if __name__ == "__main__":
    main()
