"""The serving engine in process: answers, and their latency, as `tailor serve` gives them minus HTTP.

The evaluate stage answers its questions here, so `p50_latency_ms`/`p95_latency_ms` measure what a
user of the server sees without the network: the model loaded as the server loads it, the
request formatted, queued, batched with whatever else is in flight, decoded and detokenized by the
same engine and code path (`tailor.inference.generation.complete`), with `concurrency` requests in
flight at once (1: one at a time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from tailor.errors import TailorError

TIMEOUT = 3600.0  # an evaluation waits for every answer; the server's own timeout is a policy, not a measure


@dataclass
class Answer:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float  # from the request's arrival (before tokenizing) to its whole answer


def answer_in_process(folder: Path, prompts: list[str] | list[list[dict]], max_new_tokens: int, temperature: float = 0.0,
                      top_p: float = 1.0, seed: int | None = None, concurrency: int = 1, max_batch: int = 16,
                      max_queue: int = 64, warmup: int = 2, device: str = "cpu",
                      on_answer: Callable[[], None] | None = None,
                      stop: list[str] | None = None, verify: bool = True) -> tuple[list[Answer], dict]:
    """Answer every prompt (a text, or a conversation) through a serving engine of the model folder; (answers,
    the settings measured with)."""
    from tailor.inference.generation import Params, complete
    from tailor.inference.served import OneModel, load_engine

    if concurrency > max_batch + max_queue:
        raise TailorError(f"evaluate.latency.concurrency ({concurrency}) is more than the server takes at once "
                          f"(deploy.serve.limits max_batch + max_queue = {max_batch + max_queue}): it would answer 429")
    host = OneModel(load_engine(Path(folder), Path(folder).name, max_batch, max_queue, device, verify))
    backend = host.engine.backend
    if not backend.generates:
        host.stop()
        raise TailorError(f"{folder}: a {backend.output} model predicts labels or scores for a text and does not "
                          "generate; POST /v1/classify serves it, and its evaluation is in evaluate/predictions.parquet")

    async def one(text: str | list[dict]) -> Answer:
        start = time.perf_counter()
        # a conversation (a list of messages) is read through the chat format, as the chat route reads it
        ids = backend.format.encode_chat(text) if isinstance(text, list) else backend.format.encode_prompt(text)
        room = backend.block_size - len(ids)
        if room < 1:
            raise TailorError(f"the prompt {str(text)[:60]!r} is {len(ids)} tokens; this model reads at most "
                              f"{backend.block_size - 1}")
        r = await complete(host, ids, Params(min(max_new_tokens, room), temperature, top_p, seed, list(stop or [])), TIMEOUT)
        return Answer(r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens,
                      (time.perf_counter() - start) * 1000)

    async def run_all() -> list[Answer]:
        for text in prompts[:warmup]:  # the first requests pay one-time costs a running server has paid
            await one(text)
        gate = asyncio.Semaphore(concurrency)

        async def gated(text: str | list[dict]) -> Answer:
            async with gate:
                answer = await one(text)
            if on_answer is not None:
                on_answer()
            return answer

        return await asyncio.gather(*(gated(t) for t in prompts))

    try:
        answers = asyncio.run(run_all())
    finally:
        host.stop()
    settings = {"measured": "through the serving engine in process (tailor.inference: the server's batching and "
                            "decoding; no HTTP)",
                "concurrency": concurrency, "max_batch": max_batch, "max_queue": max_queue, "warmup_requests": warmup,
                "requests": len(prompts), "device": device, "torch_threads": torch.get_num_threads()}
    return answers, settings
