"""The container contracts of managed platforms, on top of the same engine.

- SageMaker: `GET /ping` and `POST /invocations` on port 8080.
- Vertex AI: health and predict routes and the port from AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE, AIP_HTTP_PORT.
- Azure ML: `GET /` (liveness), `GET /ready`, `POST /score`.

The platform authenticates its callers and reaches the container on its own network, so these
routes take no API key; they exist only when `serve.platform` names the platform, and the server
refuses to start in that mode where the platform's environment is missing (unless told
`allow_outside_platform`: then it warns and rate-limits the keyless routes per client address). Every body is
`{"instances" | "inputs": prompt(s), "parameters": {...}}` and every answer lists one text a prompt
(a task-head model: one classification an input, as /v1/classify gives it).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException

from tailor.deploy.errors import ERROR_RESPONSES, engine_errors
from tailor.deploy.schemas import Text, Texts
from tailor.errors import TailorError
from tailor.inference.generation import Params, decode_all
from tailor.spec.deploy import Serve

log = logging.getLogger("tailor.serve")
PORTS = {"sagemaker": 8080, "vertex": 8080, "azure": 5001}
# what each platform puts in a container it runs (SageMaker: its model folder, or the port of a pipeline)
MARKERS = {"sagemaker": ("SAGEMAKER_BIND_TO_PORT",), "vertex": ("AIP_HTTP_PORT", "AIP_HEALTH_ROUTE", "AIP_PREDICT_ROUTE"),
           "azure": ("AZUREML_MODEL_DIR",)}
SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")


class Parameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=0)
    stop: list[Text] = Field(default_factory=list, max_length=4)


class Instance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: Text


class Invocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: Texts | None = None
    instances: list[Text | Instance] | None = Field(None, max_length=64)
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
    if platform == "sagemaker":
        return int(os.environ.get("SAGEMAKER_BIND_TO_PORT", PORTS["sagemaker"]))
    return PORTS[platform]


def inside_platform(platform: str) -> bool:
    """Whether this process runs where `platform` put it: its environment variables (or SageMaker's model folder)."""
    if platform == "sagemaker" and SAGEMAKER_MODEL_DIR.is_dir():
        return True
    return all(os.environ.get(name) for name in MARKERS[platform])


def check_platform(serve: Serve) -> float | None:
    """Refuse platform mode outside its platform unless allowed; the per-address rate of its keyless routes."""
    if serve.platform == "none":
        return None
    if inside_platform(serve.platform):
        return serve.limits.rate_limit
    missing = ", ".join(name for name in MARKERS[serve.platform] if not os.environ.get(name))
    where = f" (nor {SAGEMAKER_MODEL_DIR})" if serve.platform == "sagemaker" else ""
    if not serve.allow_outside_platform:
        raise TailorError(f"--platform {serve.platform}: its routes take no API key, and this is not a "
                          f"{serve.platform} container: {missing} not set{where}. Serve without --platform (keyed "
                          "routes), or pass --allow-outside-platform to serve them anyway")
    rate = serve.limits.platform_rate_limit
    log.warning("serving the keyless %s routes outside %s (%s not set%s): anyone who reaches %s:%s can call them; "
                "limited to %g requests/s per client address", serve.platform, serve.platform, missing, where,
                serve.host, serve.port, rate)
    return rate


async def invoke(body: Invocation, request: Request) -> dict:
    """One platform invocation: a text per prompt (a classification per input for a task-head model)."""
    state = request.app.state.tailor
    state.limit_platform(request)
    prompts = body.prompts()
    backend, p = state.host.engine.backend, body.parameters
    if not backend.generates:  # a task-head model: one classification per input
        items, version, _ = await state.classify(prompts, 1, request)
        return {"predictions": items, "model_version": version}
    encoded = await state.encode(prompts)
    limits = [state.check_lengths(ids, p.max_new_tokens) for ids in encoded]
    await state.observe(prompts)
    params = [Params(limit, p.temperature, p.top_p, p.seed, p.stop) for limit in limits]
    with engine_errors(state.limits.timeout):
        results = await decode_all(state.host, encoded, params, state.deadline(request))
    for r in results:
        state.record(r)
    return {"predictions": [{"generated_text": r.text, "finish_reason": r.finish_reason} for r in results],
            "model_version": results[0].version}


def healthy(request: Request) -> dict:
    """The platform's health check."""
    return {"status": "ok", "model": request.app.state.tailor.host.current.version}


def add_platform_routes(app: FastAPI, platform: str) -> None:
    """Register the routes of `platform` (nothing for 'none')."""
    if platform == "none":
        return
    health, predict = {"sagemaker": ("/ping", "/invocations"), "azure": ("/", "/score"),
                       "vertex": (os.environ.get("AIP_HEALTH_ROUTE", "/vertex/health"),
                                  os.environ.get("AIP_PREDICT_ROUTE", "/vertex/predict"))}[platform]
    app.add_api_route(health, healthy, methods=["GET"], tags=["platform"])
    app.add_api_route(predict, invoke, methods=["POST"], tags=["platform"],
                      responses={code: ERROR_RESPONSES[code] for code in (413, 422, 429, 504)})


def rate_limited(wait: float, rate: float) -> HTTPException:
    """The 429 of a rate limit, saying when to retry."""
    return HTTPException(429, f"rate limit of {rate:g} requests/s; retry in {wait:.1f}s",
                         headers={"Retry-After": str(max(1, round(wait)))})

