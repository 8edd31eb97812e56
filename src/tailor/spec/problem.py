"""`problem:` — what the model is for and how success is measured."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tailor.spec.base import Duration, Size, Strict
from tailor.spec.metrics import TABLE, check_bound

OutputKind = Literal["text", "label", "token-labels", "score"]


class Target(Strict):
    """A success criterion; the report marks each one met or not met."""

    metric: str
    split: Literal["train", "validation", "test"] = "test"
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Target:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least or at_most")
        if self.metric in TABLE:  # an unknown name is reported with the problem's metrics by Spec
            check_bound(self.metric, self.at_most is not None, f"{self.metric} target")
        return self

    @property
    def key(self) -> str:
        """The flat metric key this target reads, e.g. 'test/exact_match'."""
        return f"{self.split}/{self.metric}"

    def describe(self) -> str:
        return f"{self.key} {'>=' if self.at_least is not None else '<='} {self.bound:g}"

    @property
    def bound(self) -> float:
        return self.at_least if self.at_least is not None else self.at_most  # type: ignore[return-value]

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.at_least if self.at_least is not None else value <= self.at_most  # type: ignore[operator]


class Constraints(Strict):
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    time_budget: Duration | None = Field(None, description="wall time for training, e.g. '15m'")
    max_memory: Size | None = Field(None, description="memory the run may use, e.g. '8GB'")


class Problem(Strict):
    domain: str = Field(description="who the model serves, e.g. 'customer support for a hardware store'")
    task: str = Field(description="what it does, e.g. 'answer questions about product specifications'")
    output: OutputKind = "text"
    targets: list[Target] = Field(default_factory=list)
    constraints: Constraints = Field(default_factory=Constraints)

