"""Continuous batching: one thread steps every running request together through the model.

Requests wait in a bounded queue (a full queue refuses at once; the server answers 429). Each step
the engine prefills the newly admitted requests as one padded batch, steps the running ones by one
token, merges the two, and drops the rows that finished. Tokens go back through each request's own
callback as they are made, so streaming and time-to-first-token need nothing more. A backend that
does not generate (a task head) answers each admitted batch with one forward pass instead.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from tailor.sampling import sample_next

MIN_TEMPERATURE = 1e-4  # below this, dividing logits by the temperature overflows: decode greedily


@dataclass
class GenRequest:
    """One prompt to continue (or input to classify). `emit(kind, value)` receives ('token', id) or
    ('output', per-row logits), then ('done', reason) or ('error', msg)."""

    ids: list[int]
    max_new_tokens: int
    emit: Callable[[str, object], None]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    cancelled: bool = False  # set by the caller (timeout, disconnect, stop string): the row is dropped
    out: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None
    submitted: float = field(default_factory=time.perf_counter)


class Engine:
    """A model backend behind a bounded queue and a batching thread."""

    def __init__(self, backend, max_batch: int = 16, max_queue: int = 64, version: str = ""):
        self.backend, self.max_batch, self.max_queue, self.version = backend, max_batch, max_queue, version
        self._waiting: collections.deque[GenRequest] = collections.deque()
        self._cond = threading.Condition()
        self._running: list[GenRequest] = []
        self._admitted = 0  # taken from the queue, not yet running (being prefilled): they hold places too
        self._state = None  # the running rows' cache or recurrent state (a backend's state type)
        self._stopping = False
        self._service_s: float | None = None  # moving average of a request's time from submit to done
        self._thread = threading.Thread(target=self._loop, name=f"engine-{version or 'model'}", daemon=True)
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def full(self) -> bool:
        """Every batch slot and queue place is taken: a submit now would be refused (read without the lock: a hint
        that a refusal can act on at once; `submit` decides under the lock)."""
        return len(self._waiting) + self._admitted + len(self._running) >= self.max_batch + self.max_queue

    def retry_after(self) -> int:
        """Whole seconds, at least 1, until a place is likely to free: a request's mean time in the engine shared
        out over the requests running now (one of them finishes about that often)."""
        if self._service_s is None:
            return 1
        return max(1, min(3600, math.ceil(self._service_s / max(len(self._running), 1))))

    def _finish(self, req: GenRequest, reason: str) -> None:
        elapsed = time.perf_counter() - req.submitted
        self._service_s = elapsed if self._service_s is None else 0.9 * self._service_s + 0.1 * elapsed
        req.emit("done", reason)

    def submit(self, req: GenRequest) -> str:
        """Queue a request: 'ok', or 'full' (queue at its bound) or 'stopped' (draining) with nothing queued."""
        with self._cond:
            if self._stopping:
                return "stopped"
            if len(self._waiting) + self._admitted + len(self._running) >= self.max_batch + self.max_queue:
                return "full"  # every batch slot and every queue place is taken
            if req.temperature >= MIN_TEMPERATURE:
                req.generator = torch.Generator().manual_seed(req.seed if req.seed is not None else
                                                              int(torch.randint(0, 2**31 - 1, ()).item()))
            self._waiting.append(req)
            self._cond.notify()
            return "ok"

    def drain(self, timeout: float | None = None) -> bool:
        """Take no new requests, finish every queued and running one, stop the thread; True when done."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _admit(self) -> list[GenRequest]:
        with self._cond:
            while not self._waiting and not self._running and not self._stopping:
                self._cond.wait()
            room = self.max_batch - len(self._running)
            new = []
            while self._waiting and len(new) < room:
                req = self._waiting.popleft()
                if req.cancelled:
                    req.emit("done", "cancelled")
                else:
                    new.append(req)
            self._admitted = len(new)
            return new

    def _loop(self) -> None:
        with torch.inference_mode():  # nothing the engine makes needs autograd: each op skips its bookkeeping (~2%)
            self._serve()

    def _serve(self) -> None:
        while True:
            new = self._admit()
            if not new and not self._running:
                if self._stopping and not self._waiting:
                    return
                continue
            try:
                self._step(new)
            except Exception as e:  # a broken batch fails its requests; the engine keeps serving
                for req in self._running + new:
                    req.emit("error", f"{type(e).__name__}: {e}")
                self._running, self._state = [], None
            finally:
                with self._cond:
                    self._admitted = 0

    def _step(self, new: list[GenRequest]) -> None:
        if not self.backend.generates:
            self._classify(new)
            return
        parts = []
        if self._running:
            last = torch.tensor([r.out[-1] for r in self._running])
            parts.append(self.backend.step(self._state, last))
        if new:
            state, logits = self.backend.prefill([r.ids for r in new])
            self._state = state if self._state is None else self._state.merge(state)
            self._running += new
            self._admitted = 0
            parts.append(logits)
        logits = torch.cat(parts) if len(parts) > 1 else parts[0]
        next_ids = self._sample(logits)
        keep = []
        for i, (req, tok) in enumerate(zip(self._running, next_ids.tolist())):
            req.out.append(tok)
            req.emit("token", tok)
            reason = self._finished(req, tok)
            if reason:
                self._finish(req, reason)
            else:
                keep.append(i)
        if len(keep) < len(self._running):
            self._running = [self._running[i] for i in keep]
            self._state = self._state.select(keep) if keep else None

    def _classify(self, new: list[GenRequest]) -> None:
        for req, output in zip(new, self.backend.classify([r.ids for r in new])):
            req.emit("output", output)
            self._finish(req, "stop")

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        """Greedy rows by one argmax; each sampling row with its own seeded generator."""
        out = logits.argmax(dim=-1).cpu()
        for i, req in enumerate(self._running):
            if req.temperature >= MIN_TEMPERATURE:  # the seeded generator lives on the CPU
                out[i] = sample_next(logits[i:i + 1].float().cpu(), req.temperature, req.top_p, req.generator)[0, 0]
        return out

    def _finished(self, req: GenRequest, tok: int) -> str | None:
        if req.cancelled:
            return "cancelled"
        if tok in self.backend.eos_ids:
            return "stop"
        if len(req.out) >= req.max_new_tokens or len(req.ids) + len(req.out) >= self.backend.block_size:
            return "length"
        return None
