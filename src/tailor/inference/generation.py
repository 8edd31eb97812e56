"""From the engine to one HTTP request: stop strings, streaming deltas, timeouts; a classification.

The engine thread hands tokens to the request's asyncio queue; this side turns the growing token
list into text, cuts it at the first stop string (and stops the row), and holds back what might
still become a stop string or an unfinished UTF-8 character.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tailor.inference.engine import GenRequest


class Busy(Exception):
    """Every batch slot and queue place is taken (429)."""


class TimedOut(Exception):
    """The request was not answered within the limit (504)."""


@dataclass
class Params:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


@dataclass
class Result:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_s: float | None = None
    version: str = ""


async def _submit(host, req: GenRequest):
    """Queue `req` on the current engine (Busy when it is full); returns the engine that took it."""
    for _ in range(10):  # a swap in progress: the old engine stopped taking requests, the new one takes them
        engine = host.engine
        status = engine.submit(req)
        if status != "stopped":
            break
        await asyncio.sleep(0.01)
    if status != "ok":
        raise Busy
    return engine


async def generate(host, ids: list[int], params: Params, timeout: float, result: Result,
                   stream: bool = True) -> AsyncIterator[str]:
    """Yield text deltas as the model makes them (stream=False: only at the end); `result` holds the totals."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    start = time.perf_counter()
    stops = [s for s in params.stop if s]
    every_token = stream or bool(stops)  # else only the first token (for time-to-first-token) and the end matter

    def emit(kind: str, value) -> None:  # runs in the engine thread: wake the event loop only when needed
        if kind != "token" or every_token or len(req.out) == 1:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    req = GenRequest(ids, params.max_tokens, emit, params.temperature, params.top_p, params.seed)
    backend = (await _submit(host, req)).backend
    result.prompt_tokens, result.version = len(ids), host.current.version
    holdback = max((len(s) for s in stops), default=1) - 1  # text that may still become a stop string
    emitted = 0
    try:
        while True:
            remaining = timeout - (time.perf_counter() - start)
            try:
                kind, value = await asyncio.wait_for(queue.get(), max(remaining, 0.001))
            except TimeoutError:
                raise TimedOut from None
            if kind == "error":
                raise RuntimeError(str(value))
            if kind == "token" and result.first_token_s is None:
                result.first_token_s = time.perf_counter() - start
                if not every_token:
                    continue
            text = backend.format.decode(req.out)
            cut = [text.index(s) for s in stops if s in text]
            if cut:
                req.cancelled = True
                text, result.finish_reason = text[: min(cut)], "stop"
            elif kind == "done":
                result.finish_reason = "stop" if value == "stop" else "length"
            if result.finish_reason:
                result.text, result.completion_tokens = text, len(req.out)
                if len(text) > emitted:
                    yield text[emitted:]
                return
            safe = len(text) - holdback
            while safe > emitted and text[safe - 1] == "\ufffd":  # half a UTF-8 character so far
                safe -= 1
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
    finally:
        if result.finish_reason is None:
            req.cancelled = True  # timeout or client gone: free the batch slot


async def complete(host, ids: list[int], params: Params, timeout: float) -> Result:
    """The whole completion at once."""
    result = Result()
    async for _ in generate(host, ids, params, timeout, result, stream=False):
        pass
    return result


async def classify(host, ids: list[int], timeout: float):
    """(logits, the engine that answered) of one input to a task-head model, batched with other requests by the engine;
    the engine's backend describes the logits and its version names the model that gave them."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future = loop.create_future()

    def emit(kind: str, value) -> None:  # runs in the engine thread
        if kind in ("output", "error"):
            loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result((kind, value)))

    req = GenRequest(ids, 0, emit)
    engine = await _submit(host, req)
    try:
        kind, value = await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        req.cancelled = True  # dropped when the engine reaches it
        raise TimedOut from None
    if kind == "error":
        raise RuntimeError(str(value))
    return value, engine
