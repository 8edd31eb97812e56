"""`deploy:` — how the trained model is served, watched, exported and retrained."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from tailor.spec.metrics import TABLE, check_bound
from tailor.spec.base import Duration, Size, Strict


class Limits(Strict):
    max_input_tokens: int | None = Field(None, ge=1, description="longest prompt; default: the model's context - 1")
    max_input_chars: int | None = Field(None, ge=1, description="longest prompt in characters, checked before it is "
                                        "tokenized (422 above); default: max_input_tokens x the longest token of the "
                                        "vocabulary, so no text that could fit is refused")
    max_total_tokens: int | None = Field(None, ge=2, description="prompt + max_tokens; default: the model's context")
    max_body: Size = Field(1_000_000, description="largest request body (413 above)")
    max_batch: int = Field(16, ge=1, description="requests decoded together")
    max_queue: int = Field(64, ge=0, description="requests waiting beyond the batch; 429 when full")
    rate_limit: float | None = Field(None, gt=0, description="requests per second per API key (429 above); none: unlimited")
    burst: int = Field(20, ge=1, description="requests a key may send at once before the rate applies")
    timeout: Duration = Field(60.0, description="a request still unanswered after this gets 504; a stream is cut at "
                              "this deadline, counted from its arrival")
    platform_rate_limit: float = Field(10.0, gt=0, description="requests per second per client address on the "
                                       "keyless platform routes when served outside the platform (--allow-outside-"
                                       "platform); inside it, rate_limit applies per address when set")


class Connections(Strict):
    """How long a client may take, and how many may be connected: slow or idle clients are cut off."""

    header_timeout: Duration = Field(10.0, gt=0, description="a request's headers must arrive within this, counted "
                                     "from the connection (or the previous answer); else the connection is closed")
    body_timeout: Duration = Field(30.0, gt=0, description="the whole body must arrive within this once the headers "
                                   "have; else 408 and the connection is closed")
    keep_alive: Duration = Field(5.0, gt=0, description="an idle kept-alive connection is closed after this")
    max_connections: int = Field(256, ge=1, description="open connections and running requests at most; "
                                 "uvicorn answers 503 beyond")
    max_header_size: Size = Field(16_384, ge=1024, description="most bytes of an unfinished request head held "
                                  "while it arrives (400 above)")


class Serve(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    limits: Limits = Field(default_factory=Limits)
    connections: Connections = Field(default_factory=Connections)
    docs: bool = Field(False, description="serve /docs, /redoc and /openapi.json (each needs an API key)")
    tls_cert: str | None = Field(None, description="PEM certificate; with tls_key the server speaks HTTPS only")
    tls_key: str | None = None
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS; empty: CORS off")
    log_prompts: bool = Field(False, description="write prompts and answers to the log")
    platform: Literal["none", "sagemaker", "vertex", "azure"] = Field(
        "none", description="cloud container contract: its routes answer without an API key (the platform authenticates)")
    allow_outside_platform: bool = Field(False, description="serve the platform's keyless routes even where the "
                                         "platform's environment variables are missing (rate-limited, with a warning)")

    @model_validator(mode="after")
    def _tls_pair(self) -> Serve:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


class Alert(Strict):
    """Fires when `metric` crosses the bound over the window; resolves when it is back."""

    metric: Literal["p95_latency_ms", "error_rate", "drift_psi", "online_accuracy", "queue_depth"]
    above: float | None = None
    below: float | None = None
    window: Duration = Field(300.0, description="how far back requests and feedback count")
    min_count: int = Field(5, ge=1, description="fewer observations than this in the window: no verdict")

    @model_validator(mode="after")
    def _one_bound(self) -> Alert:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        check_bound(self.metric, self.above is not None, f"{self.metric} alert")
        return self


class Monitor(Strict):
    alerts: list[Alert] = Field(default_factory=list)
    webhook: str | None = Field(None, description="URL that receives each firing and resolved alert as JSON")
    every: Duration = Field(10.0, description="how often the alert rules are evaluated")
    drift_window: int = Field(200, ge=10, description="recent inputs compared with the training data")


class Retrain(Strict):
    metric: str | None = Field(None, description="compared on the held-out set; default: the first target's metric")
    margin: float = Field(0.0, ge=0, description="the challenger must beat the champion by more than this")

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in TABLE:
            raise ValueError(f"{value!r} is not a metric; known: {', '.join(TABLE)}")
        return value
    use_feedback: bool = Field(True, description="add feedback corrections to the training data")


class Deploy(Strict):
    serve: Serve = Field(default_factory=Serve)
    monitor: Monitor = Field(default_factory=Monitor)
    retrain: Retrain = Field(default_factory=Retrain)
    export: list[Literal["hf", "onnx", "onnx-int8", "gguf"]] = Field(default_factory=list)
