"""The server's routes, at module level: each reads the app's parts (`server.App`) from `request.app.state`.

Generation routes hand their prompts to the engine before answering, so a refusal for capacity is a
429 before the first byte, streams included; a stream then ends at the request's deadline whatever
the client does.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from functools import partial

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request, Security
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from tailor.deploy.auth import KeyInfo
from tailor.deploy.errors import ERROR_RESPONSES, STREAM_STATUS, engine_errors, error_body, http_error
from tailor.inference.generation import Decoding, EngineFailed, Params, Result, TimedOut, decode_all, start
from tailor.deploy.schemas import ChatRequest, ClassifyRequest, CompletionRequest, FeedbackRequest
from tailor.errors import TailorError

_KEYED = {code: ERROR_RESPONSES[code] for code in (401, 403, 408, 413, 422, 429, 500)}
_GENERATING = {**_KEYED, 504: ERROR_RESPONSES[504]}
open_router = APIRouter(tags=["health"])
router = APIRouter(responses=_KEYED)
docs_router = APIRouter(include_in_schema=False)
bearer = HTTPBearer(auto_error=False, description="an API key from `tailor keys create`")


def _scope(scope: str):
    """The dependency that admits a key with `scope` (declared in the schema as the bearer scheme)."""
    # async, so the check (a hash and one indexed SQLite read) runs on the loop rather than costing a thread hop
    async def dependency(request: Request, _: HTTPAuthorizationCredentials | None = Security(bearer)) -> KeyInfo:
        info = request.app.state.tailor.authorize(request, scope)
        # FastAPI parses the JSON body before this and validates it after: yield between the two, so that a
        # big body never holds the loop (and /health) for both at once
        await asyncio.sleep(0)
        return info
    return Depends(dependency)


def _usage(results: list[Result]) -> dict:
    prompt, completion = sum(r.prompt_tokens for r in results), sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(obj: dict | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n"


class DeadlineStream(StreamingResponse):
    """Server-sent events that end at the request's deadline whatever the client does: a send blocked on a
    client that does not read counts against it too, and is then abandoned (the connection closes)."""

    def __init__(self, events, decoding: Decoding, deadline: float, scope: dict, request_id: str):
        super().__init__(events, media_type="text/event-stream", headers={"X-Request-Id": request_id})
        self.decoding, self.deadline, self.scope = decoding, deadline, scope

    async def stream_response(self, send) -> None:
        ended = False

        async def tracked(message) -> None:
            nonlocal ended
            await send(message)
            ended = ended or (message["type"] == "http.response.body" and not message.get("more_body", False))

        try:
            with anyio.move_on_after(max(self.deadline - time.monotonic(), 0.0)) as cut:
                await super().stream_response(tracked)
            if cut.cancelled_caught and not ended:
                self.scope[STREAM_STATUS] = 504
                with anyio.move_on_after(0.5):  # a last word to a client that still reads
                    last = _sse(error_body(504, "the stream reached its time limit"))
                    await send({"type": "http.response.body", "body": last.encode(), "more_body": False})
        finally:
            self.decoding.cancel()  # the client left or the deadline passed: free the batch slot


async def _events(state, decoding: Decoding, deadline: float, chunk, first, scope: dict):
    if first is not None:
        yield _sse(chunk(first, None))
    try:
        async for delta in decoding.deltas(deadline):
            yield _sse(chunk(delta, None))
    except (TimedOut, EngineFailed) as e:
        error = http_error(e, state.limits.timeout)
        scope[STREAM_STATUS] = error.status_code  # counted as what it is, though the stream began 200
        yield _sse(error_body(error.status_code, str(error.detail)))
        return
    state.record(decoding.result)
    yield _sse(chunk("", decoding.result.finish_reason))
    yield _sse("[DONE]")


async def open_stream(state, request: Request, ids: list[int], params: Params, chunk, request_id: str,
                      first: dict | None = None) -> tuple[DeadlineStream, str]:
    """The prompt is handed to the engine first (429 when it is full, before any byte); then the stream."""
    deadline = state.deadline(request)
    with engine_errors(state.limits.timeout):
        decoding = await start(state.host, ids, params)
    events = _events(state, decoding, deadline, chunk, first, request.scope)
    return DeadlineStream(events, decoding, deadline, request.scope, request_id), decoding.result.version


@open_router.get("/health")
def health() -> dict:
    """Liveness: answers while the event loop does."""
    return {"status": "ok"}


@open_router.get("/ready")
def ready(request: Request) -> dict:
    """Readiness, and the model version being served."""
    return {"status": "ready", "model": request.app.state.tailor.host.current.version}


@router.get("/v1/models")
def models(request: Request, key: KeyInfo = _scope("infer")) -> dict:
    """The served model and its version."""
    host = request.app.state.tailor.host
    return {"object": "list", "data": [{"id": host.engine.backend.name, "object": "model", "owned_by": "tailor",
                                        "created": int(host.current.folder.stat().st_mtime),
                                        "version": host.current.version}]}


def _completion_chunk(head: dict, text: str, finish: str | None) -> dict:
    return {**head, "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}


@router.post("/v1/completions", responses=_GENERATING)
async def completions(req: CompletionRequest, request: Request, key: KeyInfo = _scope("infer")):
    """OpenAI completions: one choice per prompt, several prompts batched together; or a stream."""
    state = request.app.state.tailor
    backend = state.generator()
    encoded = await state.encode(req.prompts)
    params = [Params(state.check_lengths(ids, req.max_tokens), req.temperature, req.top_p, req.seed, req.stop_list)
              for ids in encoded]
    request_id = f"cmpl-{uuid.uuid4().hex[:24]}"
    await state.observe(req.prompts)
    head = {"id": request_id, "object": "text_completion", "created": int(time.time()), "model": backend.name}
    if req.stream:
        response, version = await open_stream(state, request, encoded[0], params[0], partial(_completion_chunk, head),
                                              request_id)
        state.issued.add(request_id, key.id, req.prompts[0], version)
        return response
    with engine_errors(state.limits.timeout):  # one prompt refused or failed: its siblings are cancelled
        results = await decode_all(state.host, encoded, params, state.deadline(request))
    for r in results:
        state.record(r)
    state.issued.add(request_id, key.id, req.prompts[0], results[0].version)
    return {**head, "system_fingerprint": results[0].version,  # the model version that answered
            "choices": [{"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
                        for i, r in enumerate(results)], "usage": _usage(results)}


def _chat_chunk(head: dict, delta, finish: str | None) -> dict:
    body = delta if isinstance(delta, dict) else ({"content": delta} if delta else {})
    return {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": body, "finish_reason": finish}]}


@router.post("/v1/chat/completions", responses=_GENERATING)
async def chat(req: ChatRequest, request: Request, key: KeyInfo = _scope("infer")):
    """OpenAI chat completions, through the model's chat format; or a stream."""
    state = request.app.state.tailor
    backend = state.generator()
    messages = [m.model_dump() for m in req.messages]
    ids = await state.encode_chat(messages)
    params = Params(state.check_lengths(ids, req.limit), req.temperature, req.top_p, req.seed, req.stop_list)
    request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])
    await state.observe([last_user])
    head = {"id": request_id, "created": int(time.time()), "model": backend.name}
    if req.stream:
        response, version = await open_stream(state, request, ids, params, partial(_chat_chunk, head), request_id,
                                              first={"role": "assistant", "content": ""})
        state.issued.add(request_id, key.id, last_user, version)
        return response
    with engine_errors(state.limits.timeout):
        (result,) = await decode_all(state.host, [ids], [params], state.deadline(request))
    state.record(result)
    state.issued.add(request_id, key.id, last_user, result.version)
    return {**head, "object": "chat.completion", "system_fingerprint": result.version,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                         "finish_reason": result.finish_reason}], "usage": _usage([result])}


@router.post("/v1/classify", responses=_GENERATING)
async def classify_inputs(req: ClassifyRequest, request: Request, key: KeyInfo = _scope("infer")) -> dict:
    """Labels, token labels or scores of up to 64 texts, from a task-head model."""
    state = request.app.state.tailor
    items, version, tokens = await state.classify(req.inputs, req.top_k, request)
    request_id = f"clf-{uuid.uuid4().hex[:24]}"
    state.issued.add(request_id, key.id, req.inputs[0], version)
    backend = state.host.engine.backend
    return {"id": request_id, "object": "classification", "created": int(time.time()), "model": backend.name,
            "system_fingerprint": version, "output": backend.output,
            "data": [{"index": i, **item} for i, item in enumerate(items)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.post("/v1/feedback", responses={404: ERROR_RESPONSES[404]})
def feedback(req: FeedbackRequest, request: Request, key: KeyInfo = _scope("infer")) -> dict:
    """A verdict, rating or correction on an answer this server gave recently, from the key that received it."""
    state = request.app.state.tailor
    issued = state.issued.get(req.request_id)
    if issued is None:
        raise HTTPException(404, f"request {req.request_id!r} is not among the answers this server gave in the "
                                 f"last {state.issued.max_age / 3600:g} h")
    if issued.key_id != key.id:
        raise HTTPException(403, f"request {req.request_id!r} was answered for another key; feedback comes from the "
                                 "key that received the answer")
    backend = state.host.engine.backend
    if req.correction is not None and not backend.generates:
        try:  # a correction retraining could not read is refused now, not when it is used
            backend.check_correction(req.correction, issued.input)
        except TailorError as e:
            raise HTTPException(422, str(e)) from None
    row = state.feedback.add(req.request_id, req.correct, req.rating, req.correction,
                             issued.input if req.correction is not None else None, issued.version, key.id)
    return {"id": row, "request_id": req.request_id, "stored": True}


@router.get("/metrics")
def metrics(request: Request, key: KeyInfo = _scope("admin")) -> Response:
    """Prometheus metrics (admin keys)."""
    state = request.app.state.tailor
    state.metrics.queue_depth.set(state.host.engine.queue_depth)
    state.metrics.running.set(state.host.engine.running)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@docs_router.get("/openapi.json")
def openapi(request: Request, key: KeyInfo = _scope("infer")) -> JSONResponse:
    """The OpenAPI document (served only with `serve.docs`, to a key)."""
    return JSONResponse(request.app.openapi())


@docs_router.get("/docs")
def swagger(request: Request, key: KeyInfo = _scope("infer")) -> HTMLResponse:
    """Swagger UI with the schema inside the page, since the page's own requests would carry no key."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title,
                               swagger_ui_parameters={"spec": request.app.openapi()})


@docs_router.get("/redoc")
def redoc(request: Request, key: KeyInfo = _scope("infer")) -> HTMLResponse:
    """ReDoc with the schema inside the page."""
    spec = json.dumps(request.app.openapi()).replace("<", "\\u003c")
    return HTMLResponse(f"<!DOCTYPE html><html><head><title>{request.app.title}</title></head><body>"
                        '<div id="redoc"></div><script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/'
                        f'redoc.standalone.js"></script><script>Redoc.init({spec}, {{}}, '
                        'document.getElementById("redoc"))</script></body></html>')


def add_routes(app: FastAPI, docs: bool) -> None:
    """Every route of the server on `app` (the docs only when asked for)."""
    app.include_router(open_router)
    app.include_router(router)
    if docs:
        app.include_router(docs_router)
