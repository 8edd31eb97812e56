"""The HTTP server: OpenAI-compatible routes and /v1/classify over the batching engine, API keys, limits,
metrics, feedback.

Every route except /health and /ready needs an API key (`Authorization: Bearer ...`); /metrics
needs the admin scope, and the docs (off unless `serve.docs`) a key too. State (keys, feedback,
registry) lives in one folder, `--home`. The routes live in `routes`, the error mapping and the
outermost metrics guard in `errors`, the connection timeouts in `connections`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException

from tailor.deploy.admission import Admission, bearer_key
from tailor.deploy.auth import KeyInfo, KeyStore
from tailor.deploy.cloud import add_platform_routes, check_platform, rate_limited
from tailor.deploy.errors import ARRIVAL, OPEN_ROUTES, Guard, engine_errors, install_error_handlers
from tailor.deploy.feedback import FeedbackStore, IssuedAnswers
from tailor.deploy.host import ModelHost
from tailor.deploy.limits import BodyLimit, RateLimiter
from tailor.deploy.monitor import Alerter, Metrics, RequestWindow
from tailor.deploy.routes import add_routes, router
from tailor.errors import TailorError
from tailor.inference.generation import Result, classify
from tailor.spec.deploy import Monitor, Serve

__all__ = ["OPEN_ROUTES", "App", "create_app", "serve"]
log = logging.getLogger("tailor.serve")
INLINE_CHARS = 2000  # prompts up to this many characters in all are tokenized on the event loop itself
GENERATION_ROUTES = ("/v1/completions", "/v1/chat/completions", "/v1/classify")  # the keyed routes the engine answers


def longest_token(fmt) -> int:
    """Characters of the vocabulary's longest entry: no token stands for more (byte-level and word-piece
    entries are spelled at least as long as the text they decode to)."""
    tokenizer = getattr(getattr(fmt, "codec", None), "tokenizer", None) or getattr(fmt, "tokenizer", None)
    vocab = tokenizer.get_vocab() if tokenizer is not None and hasattr(tokenizer, "get_vocab") else None
    return max(map(len, vocab), default=64) if vocab else 64


class App:
    """The server's parts, shared by the routes."""

    def __init__(self, host: ModelHost, serve: Serve, monitor: Monitor, home: Path, platform_rate: float | None = None):
        self.host, self.serve, self.limits = host, serve, serve.limits
        self.keys = KeyStore(home / "keys.db")
        self.feedback = FeedbackStore(home / "feedback.db")
        self.issued = IssuedAnswers()
        self.rate = RateLimiter(self.limits.rate_limit, self.limits.burst)
        self.platform_rate = RateLimiter(platform_rate, self.limits.burst) if platform_rate else None
        self.metrics, self.window = Metrics(), RequestWindow()
        # tokenizing a long text takes long: it runs here, never on the event loop that answers /health
        self.pool = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="tokenize")
        self.max_chars = self._max_chars()
        self.drift = self._drift_monitor(monitor)
        self.alerter = Alerter(monitor, self.metrics, self.window, self.drift, self.feedback,
                               lambda: host.engine.queue_depth)
        self.metrics.set_model(host.current.version)
        host.on_swap = lambda loaded: self.metrics.set_model(loaded.version)

    def _drift_monitor(self, monitor: Monitor):
        from tailor.deploy.drift import DriftMonitor, reference_texts

        texts = reference_texts(self.host.current.folder)
        if not texts:
            log.warning("no training inputs found beside the model: input drift is not measured")
            return None
        return DriftMonitor(texts, self.host.engine.backend.format.tokens_of, monitor.drift_window)

    def _max_chars(self) -> int:
        if self.limits.max_input_chars is not None:
            return self.limits.max_input_chars
        backend = self.host.engine.backend
        block = backend.block_size
        tokens = min(self.limits.max_input_tokens or block, self.limits.max_total_tokens or block, block)
        return tokens * longest_token(backend.format)

    def authorize(self, request: Request, scope: str) -> KeyInfo:
        """The request's key (401 without a valid one, 403 without the scope, 429 over its rate)."""
        key = bearer_key(request.headers)
        info = self.keys.check(key) if key else None
        if info is None:
            raise HTTPException(401, "a valid API key is required (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not info.allows(scope):
            raise HTTPException(403, f"this key lacks the {scope!r} scope")
        wait = self.rate.acquire(info.id)
        if wait > 0:
            raise rate_limited(wait, self.limits.rate_limit)
        return info

    def limit_platform(self, request: Request) -> None:
        """The keyless platform routes are rate-limited per client address where that is configured."""
        if self.platform_rate is not None:
            wait = self.platform_rate.acquire(request.client.host if request.client else "?")
            if wait > 0:
                raise rate_limited(wait, self.platform_rate.rate)

    def deadline(self, request: Request) -> float:
        """When the request's answer is due (time.monotonic()): its arrival plus the time limit."""
        return request.scope.get(ARRIVAL, time.monotonic()) + self.limits.timeout

    def check_chars(self, texts: list[str], what: str = "prompt") -> None:
        """422 for a text longer in characters than any that could fit, before it is tokenized."""
        longest = max(map(len, texts), default=0)
        if longest > self.max_chars:
            raise HTTPException(422, f"the {what} is {longest} characters; at most {self.max_chars} are allowed")

    async def off_loop(self, fn, *args):
        """fn(*args) in the tokenizer threads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def encode(self, prompts: list[str]) -> list[list[int]]:
        """The prompts' ids, after a check of their characters; a long text is tokenized off the event loop."""
        self.check_chars(prompts)
        fmt = self.host.engine.backend.format
        if sum(map(len, prompts)) <= INLINE_CHARS:  # tokenized in well under a millisecond: a thread hop costs more
            return [fmt.encode_prompt(p) for p in prompts]
        return await self.off_loop(lambda: [fmt.encode_prompt(p) for p in prompts])

    async def encode_chat(self, messages: list[dict]) -> list[int]:
        """A conversation's ids through the model's chat format (422 when the model cannot read it)."""
        self.check_chars(["".join(m["content"] for m in messages)], "conversation")
        try:
            return await self.off_loop(self.host.engine.backend.format.encode_chat, messages)
        except TailorError as e:
            raise HTTPException(422, str(e)) from None

    def check_lengths(self, ids: list[int], max_tokens: int | None) -> int:
        """The number of new tokens to allow; 422 (HTTPException) when the request is too long."""
        block = self.host.engine.backend.block_size
        max_input = self.limits.max_input_tokens or block - 1
        max_total = min(self.limits.max_total_tokens or block, block)
        if len(ids) > max_input or len(ids) >= max_total:
            raise HTTPException(422, f"the prompt is {len(ids)} tokens; at most {min(max_input, max_total - 1)} are "
                                     "allowed")
        if max_tokens is None:
            return max_total - len(ids)
        if len(ids) + max_tokens > max_total:
            raise HTTPException(422, f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) is more than the "
                                     f"{max_total} tokens allowed; ask for at most {max_total - len(ids)} new tokens")
        return max_tokens

    def check_input(self, n_tokens: int) -> None:
        """422 (HTTPException) when an input to classify is longer than the limits and the model allow."""
        block = self.host.engine.backend.block_size
        limit = min(self.limits.max_input_tokens or block, self.limits.max_total_tokens or block, block)
        if n_tokens > limit:
            raise HTTPException(422, f"the input is {n_tokens} tokens; at most {limit} are allowed")

    def generator(self):
        """The backend, when it generates text (400 for a task-head model)."""
        backend = self.host.engine.backend
        if not backend.generates:
            raise HTTPException(400, f"{backend.name} predicts {backend.output} outputs and does not generate text; "
                                     "use /v1/classify")
        return backend

    async def classify(self, texts: list[str], top_k: int, request: Request) -> tuple[list[dict], str, int]:
        """(one answer per text, the model version that gave them, input tokens), batched by the engine."""
        backend = self.host.engine.backend
        if backend.generates:
            raise HTTPException(400, f"{backend.name} generates text; /v1/classify serves label, token-label and "
                                     "score models: use /v1/completions or /v1/chat/completions")
        self.check_chars(texts, "input")
        encoded = await self.off_loop(lambda: [backend.encode(t) for t in texts])
        for e in encoded:
            self.check_input(len(e.ids))
        await self.observe(texts)
        remaining = max(self.deadline(request) - time.monotonic(), 0.001)
        with engine_errors(self.limits.timeout):
            async with asyncio.TaskGroup() as group:  # one refused input cancels the others
                tasks = [group.create_task(classify(self.host, e.ids, remaining)) for e in encoded]
        answers = [t.result() for t in tasks]
        items = [engine.backend.describe(e, logits, top_k) for e, (logits, engine) in zip(encoded, answers)]
        for item in items:
            for label in [item.get("label")] + [w["label"] for w in item.get("words", [])]:
                if label is not None:
                    self.metrics.predictions.labels(label=label).inc()
        if self.serve.log_prompts:
            log.info("answers: %r", items)
        return items, answers[0][1].version, sum(len(e.ids) for e in encoded)

    async def observe(self, prompts: list[str]) -> None:
        """Feed the drift monitor (it tokenizes, so off the loop) and the prompt log when it is on."""
        if self.drift is not None:
            await self.off_loop(lambda: [self.drift.observe(p) for p in prompts])
        if self.serve.log_prompts:
            for p in prompts:
                log.info("prompt: %r", p)

    def record(self, result: Result) -> None:
        self.metrics.add_tokens(result.completion_tokens)
        if result.first_token_s is not None:
            self.metrics.ttft.observe(result.first_token_s)
        if self.serve.log_prompts:
            log.info("answer: %r", result.text)


def create_app(source: str | Path, serve: Serve | None = None, monitor: Monitor | None = None,
               home: str | Path = ".tailor", verify: bool = True, registry_poll: float = 2.0,
               device: str = "cpu") -> FastAPI:
    """The FastAPI app serving a run, a model folder, or `registry:NAME` (its champion, hot-swapped)."""
    serve, monitor, home = serve or Serve(), monitor or Monitor(), Path(home)
    platform_rate = check_platform(serve)  # before the model loads: a refusal should not wait for it
    host = ModelHost(str(source), home / "registry", serve.limits.max_batch, serve.limits.max_queue, device, verify)
    try:
        state = App(host, serve, monitor, home, platform_rate)
    except BaseException:
        host.stop()
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.alerter.start()
        host.watch(registry_poll)
        yield
        state.alerter.stop()
        host.stop()
        state.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"Tailor: {host.engine.backend.name}", version=host.current.version, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)  # the docs are keyed routes of their own
    app.state.tailor = state
    install_error_handlers(app)
    add_routes(app, serve.docs)
    add_platform_routes(app, serve.platform)
    if serve.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=serve.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    # a full engine refuses generation at the door (the body is read, nothing parsed); nothing reads a body past its
    # size or deadline; the guard, outermost, counts every answer
    generation = {r.path: r for r in router.routes if r.path in GENERATION_ROUTES}
    app.add_middleware(Admission, state=state, routes=generation)
    app.add_middleware(BodyLimit, max_bytes=serve.limits.max_body, deadline=serve.connections.body_timeout)
    app.add_middleware(Guard, state=state)
    return app


def serve(source: str | Path, serve_cfg: Serve, monitor: Monitor, home: Path, device: str = "cpu") -> None:
    """Run the server (HTTPS when a certificate is configured) until interrupted."""
    import uvicorn

    from tailor.deploy.connections import uvicorn_config

    app = create_app(source, serve_cfg, monitor, home, device=device)
    uvicorn.Server(uvicorn_config(app, serve_cfg)).run()
