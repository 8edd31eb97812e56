"""`train:` and `tune:` — how the weights are fitted and searched for."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tailor.spec.base import Duration, Strict


class Optimizer(Strict):
    name: Literal["adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0, description="not applied to norms, biases and embeddings' positions")
    betas: tuple[float, float] = (0.9, 0.95)


class Schedule(Strict):
    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(100, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a share of the peak")


class Train(Strict):
    optimizer: Optimizer = Field(default_factory=Optimizer)
    schedule: Schedule = Field(default_factory=Schedule)
    batch_size: int = Field(32, ge=1)
    max_steps: int = Field(1000, ge=1)
    max_time: Duration | None = Field(None, description="stop earlier when this wall time is spent; default problem.constraints.time_budget")
    eval_every: int = Field(100, ge=1, description="steps between validation passes")
    eval_batches: int = Field(20, ge=1, description="batches per validation pass")
    grad_clip: float | None = Field(1.0, gt=0)
    loss_on: Literal["output", "all"] = Field("output", description="for input/output data: learn only the answers, or everything")
    seed: int = 0


class Tune(Strict):
    method: Literal["grid", "random", "bayesian"] = "bayesian"
    trials: int = Field(10, ge=1)
    metric: str = "validation/loss"
    direction: Literal["minimize", "maximize"] = "minimize"
    space: dict[str, list[Any]] = Field(default_factory=dict, description="spec key -> [low, high(, log)] or choices")
