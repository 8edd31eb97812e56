"""Refusals for capacity at the door: a generation request that arrives while the engine is full is answered 429
by a pure ASGI middleware, before routing, body validation, dependencies and tokenizing.

Under a load above capacity most requests are refused, and the server's one event loop shares the
CPU (and the GIL) with the engine thread: every millisecond a refusal costs is taken from the answers
being made. Here a refusal costs a key check and a precomputed body. The key is still checked
first, so a client without a valid key is answered 401 by the app as always, never told the load.
The routes keep their own check (`submit` decides under the engine's lock): this one only acts on a
full engine seen now, and a request it lets through may still be refused there.
"""

from __future__ import annotations

import json

from tailor.deploy.errors import CAPACITY_MESSAGE, error_body

_BODY = json.dumps(error_body(429, CAPACITY_MESSAGE)).encode()
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]


def bearer_key(headers) -> str:
    """The API key a request carries (`Authorization: Bearer ...` or `api-key`), '' when none."""
    header = headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else headers.get("api-key", "")


class Admission:
    """ASGI middleware: 429 with Retry-After, before the app, for keyed POSTs to `routes` (path -> route, so that the
    outer guard counts the refusal under its route) while the engine has no place left."""

    def __init__(self, app, state, routes: dict, scope_needed: str = "infer"):
        self.app, self.state, self.routes, self.scope_needed = app, state, routes, scope_needed

    async def __call__(self, scope, receive, send):
        route = self.routes.get(scope.get("path")) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None or not self.state.host.engine.full or not self._keyed(scope):
            return await self.app(scope, receive, send)
        scope["route"] = route
        retry = str(self.state.host.engine.retry_after()).encode()
        await send({"type": "http.response.start", "status": 429, "headers": _HEADERS + [(b"retry-after", retry)]})
        await send({"type": "http.response.body", "body": _BODY})

    def _keyed(self, scope) -> bool:
        """Whether the request carries a valid key with the route's scope (else the app answers 401 or 403)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []
                   if k.lower() in (b"authorization", b"api-key")}
        key = bearer_key(headers)
        info = self.state.keys.check(key) if key else None
        return info is not None and info.allows(self.scope_needed)
