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
    """Every batch slot and queue place is taken (429); `retry_after`: the engine's estimate, in whole seconds."""

    def __init__(self, retry_after: int = 1):
        super().__init__(retry_after)
        self.retry_after = retry_after


class TimedOut(Exception):
    """The request was not answered within the limit (504)."""


class EngineFailed(Exception):
    """The engine failed on the batch that held this request (500)."""


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
        raise Busy(engine.retry_after())
    return engine


class Decoding:
    """One prompt the engine has taken (made by `start`, which raises Busy first); its text comes from `deltas`."""

    def __init__(self, ids: list[int], params: Params, result: Result, stream: bool):
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.started = time.perf_counter()
        self.stops = [s for s in params.stop if s]
        self.every_token = stream or bool(self.stops)  # else only the end matters
        self.first_token_at: float | None = None  # perf_counter() when the engine made the first token
        self.result = result
        self.req = GenRequest(ids, params.max_tokens, self._emit, params.temperature, params.top_p, params.seed)
        self.backend = None

    def _emit(self, kind: str, value) -> None:
        """Runs in the engine thread. The loop is woken only for what it must act on: each waking is a thread hop,
        and while the loop holds the GIL for it the engine cannot take its next step."""
        if kind == "token" and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if kind != "token" or self.every_token:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

    def cancel(self) -> None:
        """Free the batch slot (timeout, client gone, a sibling refused): the engine drops the row."""
        if self.result.finish_reason is None:
            self.req.cancelled = True

    async def _next(self, deadline: float) -> tuple[str, object]:
        try:
            return await asyncio.wait_for(self.queue.get(), max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            raise TimedOut from None

    async def deltas(self, deadline: float) -> AsyncIterator[str]:
        """Text deltas as the model makes them (only at the end when not streaming), until `deadline`
        (time.monotonic()); TimedOut after it. The result holds the totals."""
        result, req = self.result, self.req
        holdback = max((len(s) for s in self.stops), default=1) - 1  # text that may still become a stop string
        emitted = 0
        try:
            while True:
                kind, value = await self._next(deadline)
                if kind == "error":
                    raise EngineFailed(str(value))
                if result.first_token_s is None and self.first_token_at is not None:
                    result.first_token_s = self.first_token_at - self.started
                text = self.backend.format.decode(req.out)
                cut = [text.index(s) for s in self.stops if s in text]
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
            self.cancel()


async def start(host, ids: list[int], params: Params, result: Result | None = None, stream: bool = True) -> Decoding:
    """Hand a prompt to the engine now: Busy when it is full, so a refusal comes before any answer is begun."""
    decoding = Decoding(ids, params, result if result is not None else Result(), stream)
    engine = await _submit(host, decoding.req)
    decoding.backend = engine.backend
    decoding.result.prompt_tokens, decoding.result.version = len(ids), engine.version or host.current.version
    return decoding


async def generate(host, ids: list[int], params: Params, timeout: float, result: Result,
                   stream: bool = True) -> AsyncIterator[str]:
    """Yield text deltas as the model makes them (stream=False: only at the end); `result` holds the totals."""
    deadline = time.monotonic() + timeout
    decoding = await start(host, ids, params, result, stream)
    async for delta in decoding.deltas(deadline):
        yield delta


async def complete(host, ids: list[int], params: Params, timeout: float | None = None,
                   deadline: float | None = None) -> Result:
    """The whole completion at once, by `deadline` (time.monotonic()) or within `timeout` seconds."""
    deadline = deadline if deadline is not None else time.monotonic() + (timeout if timeout is not None else 60.0)
    decoding = await start(host, ids, params, stream=False)
    async for _ in decoding.deltas(deadline):
        pass
    return decoding.result


async def decode_all(host, prompts: list[list[int]], params: list[Params], deadline: float) -> list[Result]:
    """Every prompt of one request, batched by the engine; when one is refused or fails, the others are
    cancelled (their rows dropped) and that error is raised, in an ExceptionGroup."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(complete(host, ids, p, deadline=deadline)) for ids, p in zip(prompts, params)]
    return [t.result() for t in tasks]


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
    except asyncio.CancelledError:  # a sibling input was refused, or the client left
        req.cancelled = True
        raise
    if kind == "error":
        raise EngineFailed(str(value))
    return value, engine
