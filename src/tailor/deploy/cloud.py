"""The container contracts of managed platforms, on top of the same engine.

- SageMaker: `GET /ping` and `POST /invocations` on port 8080.
- Vertex AI: health and predict routes and the port from AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE, AIP_HTTP_PORT.
- Azure ML: `GET /` (liveness), `GET /ready`, `POST /score`.

The platform authenticates its callers and reaches the container on its own network, so these
routes take no API key; they exist only when `serve.platform` names the platform. Every body is
`{"instances" | "inputs": prompt(s), "parameters": {...}}` and every answer lists one text a prompt
(a task-head model: one classification an input, as /v1/classify gives it).
"""

from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tailor.inference.generation import Params

PORTS = {"sagemaker": 8080, "vertex": 8080, "azure": 5001}


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=0)
    stop: list[str] = Field(default_factory=list, max_length=4)


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str


class Invocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str] | None = None
    instances: list[str | Instance] | None = Field(None, max_length=64)
    parameters: Parameters = Field(default_factory=Parameters)

    @model_validator(mode="after")
    def _one_shape(self) -> Invocation:
        if (self.inputs is None) == (self.instances is None):
            raise ValueError("give exactly one of inputs (a prompt or a list) and instances (Vertex AI style)")
        if not 1 <= len(self.prompts()) <= 64:
            raise ValueError("1 to 64 prompts")
        return self

    def prompts(self) -> list[str]:
        if self.instances is not None:
            return [i.prompt if isinstance(i, Instance) else i for i in self.instances]
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs or [])


def platform_port(platform: str) -> int:
    """The port the platform sends traffic to."""
    if platform == "vertex":
        return int(os.environ.get("AIP_HTTP_PORT", PORTS["vertex"]))
    return PORTS[platform]


def add_platform_routes(app: FastAPI, state, platform: str, run_one) -> None:
    """Register the routes of `platform` (nothing for 'none')."""
    if platform == "none":
        return

    async def invoke(body: Invocation) -> dict:
        prompts = body.prompts()
        backend, p = state.host.engine.backend, body.parameters
        if not backend.generates:  # a task-head model: one classification per input
            items, version, _ = await state.classify(prompts, 1)
            return {"predictions": items, "model_version": version}
        encoded = [backend.format.encode_prompt(text) for text in prompts]
        limits = [state.check_lengths(ids, p.max_new_tokens) for ids in encoded]
        for text in prompts:
            state.observe(text)
        results = await asyncio.gather(*(run_one(ids, Params(limit, p.temperature, p.top_p, p.seed, p.stop))
                                         for ids, limit in zip(encoded, limits)))
        for r in results:
            state.record(r)
        return {"predictions": [{"generated_text": r.text, "finish_reason": r.finish_reason} for r in results],
                "model_version": state.host.current.version}

    def healthy() -> dict:
        return {"status": "ok", "model": state.host.current.version}

    if platform == "sagemaker":
        app.add_api_route("/ping", healthy, methods=["GET"])
        app.add_api_route("/invocations", invoke, methods=["POST"])
    elif platform == "vertex":
        app.add_api_route(os.environ.get("AIP_HEALTH_ROUTE", "/vertex/health"), healthy, methods=["GET"])
        app.add_api_route(os.environ.get("AIP_PREDICT_ROUTE", "/vertex/predict"), invoke, methods=["POST"])
    elif platform == "azure":
        app.add_api_route("/", healthy, methods=["GET"])
        app.add_api_route("/score", invoke, methods=["POST"])
