"""How uvicorn runs the app: its keep-alive, concurrency and header-size settings from `deploy.serve.connections`,
and a deadline on each request's head, which uvicorn does not have.

uvicorn arms its keep-alive timer only after an answer, and cancels it as soon as any byte arrives:
a client that connects and sends nothing, or sends its headers a byte at a time, would otherwise
hold a connection (and a `max_connections` slot) for ever.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tailor.spec.deploy import Serve


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not complete `header_timeout`
    seconds after the connection opened or the previous answer ended."""

    header_timeout = 10.0  # set per server by uvicorn_config's subclass
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head is in: the body has a deadline of its own
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.warning("closing a connection whose request head did not arrive within %gs",
                                self.header_timeout)
            self.transport.close()


def uvicorn_config(app, cfg: Serve, **overrides):
    """The uvicorn.Config that serves `app` as `cfg` says (TLS, timeouts, the connection cap)."""
    import uvicorn

    c = cfg.connections
    protocol = type("TimedH11Protocol", (TimedH11Protocol,), {"header_timeout": c.header_timeout})
    settings = {"host": cfg.host, "port": cfg.port, "log_level": "info", "http": protocol,
                "timeout_keep_alive": c.keep_alive, "limit_concurrency": c.max_connections,
                "h11_max_incomplete_event_size": c.max_header_size}
    if cfg.tls_cert:
        settings |= {"ssl_certfile": cfg.tls_cert, "ssl_keyfile": cfg.tls_key}
    return uvicorn.Config(app, **(settings | overrides))
