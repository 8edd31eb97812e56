"""A first HTTP server for a trained model: one OpenAI-style completion route and a health check."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from tailor.errors import TailorError


class CompletionRequest(BaseModel):
    prompt: str
    max_tokens: int = Field(32, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: list[str] | str | None = None
    model: str | None = None


def create_app(model_path: str | Path) -> FastAPI:
    """A FastAPI app serving the model at model_path (a run directory or a model folder)."""
    from tailor.inference import Generator

    gen = Generator(model_path)
    name = gen.card.get("name", gen.folder.name)
    lock = threading.Lock()  # one generation at a time; batching comes with the deployment stage
    app = FastAPI(title=f"Tailor: {name}")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": name}

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> dict:
        stop = [req.stop] if isinstance(req.stop, str) else req.stop
        try:
            with lock:
                c = gen.complete(req.prompt, req.max_tokens, req.temperature, req.top_p, req.seed, stop)
        except TailorError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": name,
                "choices": [{"index": 0, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}],
                "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                          "total_tokens": c.prompt_tokens + c.completion_tokens}}

    return app


def serve(model_path: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(model_path), host=host, port=port, log_level="info")
