"""The server's errors: one JSON shape, one mapping from engine errors to HTTP codes, and the outermost
middleware that times and counts every answer and turns an unhandled exception into a counted JSON 500."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from tailor.inference.generation import Busy, EngineFailed, TimedOut

log = logging.getLogger("tailor.serve")
OPEN_ROUTES = {"/health", "/ready"}
ARRIVAL = "tailor.arrival"  # scope key: time.monotonic() when the request arrived (deadlines count from it)
STREAM_STATUS = "tailor.stream_status"  # scope key: the code a stream that began 200 ended with (504, 500)
ENGINE_ERRORS = (Busy, TimedOut, EngineFailed)
CAPACITY_MESSAGE = "the server is at capacity; retry shortly"


class ErrorBody(BaseModel):
    """{"error": {"message", "type", "code"}}, as OpenAI's clients read it."""

    error: dict[str, str | int]


_WHY = {401: "no valid API key", 403: "the key lacks the route's scope (feedback: the answer went to another key)",
        404: "feedback: no such answer from this server recently", 408: "the body did not arrive in time",
        413: "the body is too large", 422: "the request is invalid or too long", 429: "rate limit, or the server is "
        "at capacity (Retry-After says when to retry)", 500: "internal error (counted in /metrics)",
        504: "no answer within the time limit"}
ERROR_RESPONSES = {code: {"model": ErrorBody, "description": why} for code, why in _WHY.items()}


def error_body(status: int, message: str) -> dict:
    """The OpenAI-shaped error every non-2xx answer carries."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "code": status}}


def api_error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status, headers=headers)


def http_error(exc: Exception, timeout: float) -> HTTPException:
    """The HTTP answer to an engine error: 429 when it is full, 504 past the deadline, 500 when it failed."""
    if isinstance(exc, Busy):
        return HTTPException(429, CAPACITY_MESSAGE, headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, TimedOut):
        return HTTPException(504, f"no answer within {timeout:g}s")
    log.error("the engine failed on a request: %s", exc)
    return HTTPException(500, "the model failed on this request; it was logged")


def first_engine_error(exc: BaseException) -> Exception | None:
    """The engine error in `exc` or, for a task group's ExceptionGroup, the first one among its parts."""
    if isinstance(exc, ENGINE_ERRORS):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        return next(filter(None, (first_engine_error(e) for e in exc.exceptions)), None)
    return None


@contextlib.contextmanager
def engine_errors(timeout: float) -> Iterator[None]:
    """Answer engine errors (also inside a task group's ExceptionGroup) with their HTTP code."""
    try:
        yield
    except (Exception, BaseExceptionGroup) as e:  # noqa: B902 (task groups raise groups)
        known = first_engine_error(e)
        if known is None:
            raise
        raise http_error(known, timeout) from None


def install_error_handlers(app: FastAPI) -> None:
    """HTTP errors and invalid bodies answer in the JSON error shape."""
    @app.exception_handler(HTTPException)
    async def http_exception(request: Request, exc: HTTPException):
        return api_error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                             for e in exc.errors())
        return api_error(422, problems)


class Guard:
    """Outermost ASGI middleware: times every request, counts it by route and code in the metrics and the
    alert window, and answers an unhandled exception with a JSON 500 that is counted like any other."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope[ARRIVAL] = time.monotonic()
        status: list[int] = []

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:  # shutting down mid-answer: not the server's error
            scope[STREAM_STATUS] = 499
            raise
        except Exception:
            log.exception("unhandled error answering %s %s", scope.get("method"), scope.get("path"))
            if not status:  # nothing sent yet: a JSON 500; else the connection ends with the broken answer
                body = json.dumps(error_body(500, "internal error; it was logged")).encode()
                await send({"type": "http.response.start", "status": 500,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
            scope[STREAM_STATUS] = 500
        finally:
            code = scope.get(STREAM_STATUS) or (status[0] if status else 500)
            self.count(scope, code, time.monotonic() - scope[ARRIVAL])

    def count(self, scope, code: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        metrics = self.state.metrics
        metrics.requests.labels(route=route, code=str(code)).inc()
        metrics.latency.labels(route=route).observe(elapsed)
        if code >= 400:
            metrics.errors.labels(route=route, code=str(code)).inc()
        if route not in OPEN_ROUTES and route != "/metrics":
            self.state.window.add(elapsed, code >= 500)
