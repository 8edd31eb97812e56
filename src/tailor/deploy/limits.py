"""Request limits that protect the server: body size (413), body time (408) and per-key request rates (429)."""

from __future__ import annotations

import asyncio
import json
import threading
import time


class RateLimiter:
    """A token bucket per API key: `burst` requests at once, refilled at `rate` per second."""

    def __init__(self, rate: float | None, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str) -> float:
        """0 when the request may go ahead; otherwise the seconds until it may."""
        if self.rate is None:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key_id] = (tokens - 1, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1 - tokens) / self.rate


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` is answered 413 before it is read whole, and one that has not
    arrived whole `deadline` seconds after its headers is answered 408; both close the connection.

    uvicorn has no body timeout of its own: without this, a client sending a byte a second (with or
    without a key, since keys are checked after the body is read) would hold its connection for ever.
    """

    def __init__(self, app, max_bytes: int, deadline: float = 30.0):
        self.app, self.max_bytes, self.deadline = app, max_bytes, deadline

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _refuse(send, 413, f"the request body is larger than {self.max_bytes} bytes")
        # read the body here, at most max_bytes of it, then hand the app the same messages
        messages: list[dict] = []
        try:
            async with asyncio.timeout(self.deadline):
                too_big = await self._read(receive, messages)
        except TimeoutError:
            return await _refuse(send, 408, f"the request body did not arrive within {self.deadline:g}s")
        if too_big:
            return await _refuse(send, 413, f"the request body is larger than {self.max_bytes} bytes")

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive, messages: list[dict]) -> bool:
        """Collect the body's messages; True as soon as it passes max_bytes."""
        seen = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return False
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                return True
            if not message.get("more_body", False):
                return False


async def _refuse(send, status: int, message: str) -> None:
    code = {413: "payload_too_large", 408: "request_timeout"}[status]
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # the rest of the body is never read: end the connection
    await send({"type": "http.response.body", "body": body})
