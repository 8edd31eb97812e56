"""`deploy:` — how the trained model is served."""

from __future__ import annotations

from pydantic import Field

from tailor.spec.base import Strict


class Serve(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class Deploy(Strict):
    serve: Serve = Field(default_factory=Serve)
