"""The HTTP server: OpenAI-compatible routes and /v1/classify over the batching engine, API keys, limits,
metrics, feedback.

Every route except /health and /ready needs an API key (`Authorization: Bearer ...`); /metrics
needs the admin scope. State (keys, feedback, registry) lives in one folder, `--home`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
import uuid
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from tailor.deploy.auth import KeyInfo, KeyStore
from tailor.deploy.feedback import FeedbackStore
from tailor.inference.generation import Busy, Params, Result, TimedOut, classify, complete, generate
from tailor.deploy.host import ModelHost
from tailor.deploy.limits import BodyLimit, RateLimiter
from tailor.deploy.monitor import Alerter, Metrics, RequestWindow
from tailor.deploy.schemas import ChatRequest, ClassifyRequest, CompletionRequest, FeedbackRequest
from tailor.errors import TailorError
from tailor.spec.deploy import Monitor, Serve

log = logging.getLogger("tailor.serve")
OPEN_ROUTES = {"/health", "/ready"}


def api_error(status: int, message: str, kind: str = "invalid_request_error", headers: dict | None = None):
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


class App:
    """The server's parts, shared by the routes."""

    def __init__(self, host: ModelHost, serve: Serve, monitor: Monitor, home: Path):
        self.host, self.serve, self.limits = host, serve, serve.limits
        self.keys = KeyStore(home / "keys.db")
        self.feedback = FeedbackStore(home / "feedback.db")
        self.rate = RateLimiter(self.limits.rate_limit, self.limits.burst)
        self.metrics, self.window = Metrics(), RequestWindow()
        self.recent: collections.OrderedDict[str, str] = collections.OrderedDict()  # request id -> prompt, in memory
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

    def remember(self, request_id: str, prompt: str) -> None:
        self.recent[request_id] = prompt
        while len(self.recent) > 10_000:
            self.recent.popitem(last=False)

    def authorize(self, request: Request, scope: str) -> KeyInfo:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("api-key", "")
        info = self.keys.check(key) if key else None
        if info is None:
            raise HTTPException(401, "a valid API key is required (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        if not info.allows(scope):
            raise HTTPException(403, f"this key lacks the {scope!r} scope")
        wait = self.rate.acquire(info.id)
        if wait > 0:
            raise HTTPException(429, f"rate limit of {self.limits.rate_limit:g} requests/s for this key; retry in "
                                     f"{wait:.1f}s", headers={"Retry-After": str(max(1, round(wait)))})
        return info

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

    async def classify(self, texts: list[str], top_k: int) -> tuple[list[dict], str, int]:
        """(one answer per text, the model version that gave them, input tokens), batched by the engine."""
        backend = self.host.engine.backend
        if backend.generates:
            raise HTTPException(400, f"{backend.name} generates text; /v1/classify serves label, token-label and "
                                     "score models: use /v1/completions or /v1/chat/completions")
        encoded = [backend.encode(t) for t in texts]
        for e in encoded:
            self.check_input(len(e.ids))
        for t in texts:
            self.observe(t)
        try:
            answers = await asyncio.gather(*(classify(self.host, e.ids, self.limits.timeout) for e in encoded))
        except Busy:
            raise HTTPException(429, "the server is at capacity; retry shortly", headers={"Retry-After": "1"}) from None
        except TimedOut:
            raise HTTPException(504, f"no answer within {self.limits.timeout:g}s") from None
        items = [engine.backend.describe(e, logits, top_k) for e, (logits, engine) in zip(encoded, answers)]
        for item in items:
            for label in [item.get("label")] + [w["label"] for w in item.get("words", [])]:
                if label is not None:
                    self.metrics.predictions.labels(label=label).inc()
        if self.serve.log_prompts:
            log.info("answers: %r", items)
        return items, answers[0][1].version, sum(len(e.ids) for e in encoded)

    def observe(self, prompt: str) -> None:
        if self.drift is not None:
            self.drift.observe(prompt)
        if self.serve.log_prompts:
            log.info("prompt: %r", prompt)

    def record(self, result: Result) -> None:
        self.metrics.add_tokens(result.completion_tokens)
        if result.first_token_s is not None:
            self.metrics.ttft.observe(result.first_token_s)
        if self.serve.log_prompts:
            log.info("answer: %r", result.text)


def _scope(scope: str):
    def dependency(request: Request) -> KeyInfo:
        return request.app.state.tailor.authorize(request, scope)
    return Depends(dependency)


def _choice_usage(results: list[Result]) -> dict:
    prompt, completion = sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(obj: dict | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


def create_app(source: str | Path, serve: Serve | None = None, monitor: Monitor | None = None,
               home: str | Path = ".tailor", verify: bool = True, registry_poll: float = 2.0,
               device: str = "cpu") -> FastAPI:
    """The FastAPI app serving a run, a model folder, or `registry:NAME` (its champion, hot-swapped)."""
    serve, monitor, home = serve or Serve(), monitor or Monitor(), Path(home)
    host = ModelHost(str(source), home / "registry", serve.limits.max_batch, serve.limits.max_queue, device, verify)
    state = App(host, serve, monitor, home)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        state.alerter.start()
        host.watch(registry_poll)
        yield
        state.alerter.stop()
        host.stop()

    app = FastAPI(title=f"Tailor: {host.engine.backend.name}", version=host.current.version, lifespan=lifespan)
    app.state.tailor = state
    app.add_middleware(BodyLimit, max_bytes=serve.limits.max_body)  # nothing reads a body past the limit

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return api_error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                             for e in exc.errors())
        return api_error(422, problems)

    @app.middleware("http")
    async def measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        elapsed = time.perf_counter() - start
        state.metrics.requests.labels(route=route, code=str(response.status_code)).inc()
        state.metrics.latency.labels(route=route).observe(elapsed)
        if response.status_code >= 400:
            state.metrics.errors.labels(route=route, code=str(response.status_code)).inc()
        if route not in OPEN_ROUTES and route != "/metrics":
            state.window.add(elapsed, response.status_code >= 500)
        return response

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ready", "model": host.current.version}

    @app.get("/v1/models")
    def models(key: KeyInfo = _scope("infer")) -> dict:
        return {"object": "list", "data": [{"id": host.engine.backend.name, "object": "model", "owned_by": "tailor",
                                            "created": int(host.current.folder.stat().st_mtime),
                                            "version": host.current.version}]}

    async def run_one(ids: list[int], params: Params) -> Result:
        try:
            return await complete(host, ids, params, serve.limits.timeout)
        except Busy:
            raise HTTPException(429, "the server is at capacity; retry shortly", headers={"Retry-After": "1"}) from None
        except TimedOut:
            raise HTTPException(504, f"no answer within {serve.limits.timeout:g}s") from None

    def stream(ids: list[int], params: Params, chunk, request_id: str, first: dict | None = None):
        result = Result()

        async def events():
            if first is not None:
                yield _sse(chunk(first, None))
            try:
                async for delta in generate(host, ids, params, serve.limits.timeout, result):
                    yield _sse(chunk(delta, None))
            except (Busy, TimedOut) as e:
                yield _sse({"error": {"message": "the server is at capacity" if isinstance(e, Busy) else "timed out",
                                      "type": "server_error"}})
                return
            state.record(result)
            yield _sse(chunk("", result.finish_reason))
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers={"X-Request-Id": request_id})

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, key: KeyInfo = _scope("infer")):
        backend = state.generator()
        encoded = [backend.format.encode_prompt(p) for p in req.prompts]
        limits = [state.check_lengths(ids, req.max_tokens) for ids in encoded]
        request_id, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        for p in req.prompts:
            state.observe(p)
        state.remember(request_id, req.prompts[0])
        head = {"id": request_id, "object": "text_completion", "created": created, "model": backend.name}
        if req.stream:
            def chunk(text, finish):
                return {**head, "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}
            return stream(encoded[0], Params(limits[0], req.temperature, req.top_p, req.seed, req.stop_list), chunk,
                          request_id)
        results = await asyncio.gather(*(  # several prompts are queued together and batched by the engine
            run_one(ids, Params(limit, req.temperature, req.top_p, req.seed, req.stop_list))
            for ids, limit in zip(encoded, limits)))
        for r in results:
            state.record(r)
        return {**head, "system_fingerprint": results[0].version,  # the model version that answered
                "choices": [{"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
                            for i, r in enumerate(results)], "usage": _choice_usage(results)}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest, key: KeyInfo = _scope("infer")):
        backend = state.generator()
        messages = [m.model_dump() for m in req.messages]
        try:
            ids = backend.format.encode_chat(messages)
        except TailorError as e:
            raise HTTPException(422, str(e)) from None
        limit = state.check_lengths(ids, req.limit)
        request_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])
        state.observe(last_user)
        state.remember(request_id, last_user)
        params = Params(limit, req.temperature, req.top_p, req.seed, req.stop_list)
        head = {"id": request_id, "created": created, "model": backend.name}
        if req.stream:
            def chunk(delta, finish):
                body = delta if isinstance(delta, dict) else ({"content": delta} if delta else {})
                return {**head, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": body, "finish_reason": finish}]}
            return stream(ids, params, chunk, request_id, first={"role": "assistant", "content": ""})
        result = await run_one(ids, params)
        state.record(result)
        return {**head, "object": "chat.completion", "system_fingerprint": result.version,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                             "finish_reason": result.finish_reason}], "usage": _choice_usage([result])}

    @app.post("/v1/classify")
    async def classify_inputs(req: ClassifyRequest, key: KeyInfo = _scope("infer")) -> dict:
        items, version, tokens = await state.classify(req.inputs, req.top_k)
        request_id = f"clf-{uuid.uuid4().hex[:24]}"
        state.remember(request_id, req.inputs[0])
        backend = host.engine.backend
        return {"id": request_id, "object": "classification", "created": int(time.time()), "model": backend.name,
                "system_fingerprint": version, "output": backend.output,
                "data": [{"index": i, **item} for i, item in enumerate(items)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/feedback")
    def feedback(req: FeedbackRequest, key: KeyInfo = _scope("infer")) -> dict:
        prompt = state.recent.get(req.request_id)
        if req.correction is not None and prompt is None:
            raise HTTPException(404, f"request {req.request_id!r} is not among this server's recent answers; a "
                                     "correction needs the input it corrects")
        if req.correction is not None and not host.engine.backend.generates:
            try:  # a correction retraining could not read is refused now, not when it is used
                host.engine.backend.check_correction(req.correction, prompt)
            except TailorError as e:
                raise HTTPException(422, str(e)) from None
        row = state.feedback.add(req.request_id, req.correct, req.rating, req.correction,
                                 prompt if req.correction is not None else None, host.current.version, key.id)
        return {"id": row, "request_id": req.request_id, "stored": True}

    @app.get("/metrics")
    def metrics(key: KeyInfo = _scope("admin")) -> Response:
        state.metrics.queue_depth.set(host.engine.queue_depth)
        state.metrics.running.set(host.engine.running)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    from tailor.deploy.cloud import add_platform_routes

    add_platform_routes(app, state, serve.platform, run_one)

    if serve.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=serve.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    return app


def serve(source: str | Path, serve_cfg: Serve, monitor: Monitor, home: Path, device: str = "cpu") -> None:
    """Run the server (HTTPS when a certificate is configured) until interrupted."""
    import uvicorn

    app = create_app(source, serve_cfg, monitor, home, device=device)
    tls = {"ssl_certfile": serve_cfg.tls_cert, "ssl_keyfile": serve_cfg.tls_key} if serve_cfg.tls_cert else {}
    uvicorn.run(app, host=serve_cfg.host, port=serve_cfg.port, log_level="info", **tls)
