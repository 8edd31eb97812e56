"""Cleaning steps. Each is a small callable with one job: record -> record, or a drop reason."""

from __future__ import annotations

from typing import Protocol

from tailor.data.clean.dedup import ExactDedup
from tailor.data.clean.normalize import Normalize
from tailor.spec.data import Data


class Step(Protocol):
    name: str

    def __call__(self, record: dict) -> dict | str:
        """The kept (possibly changed) record, or a short reason for dropping it."""


def build_steps(data: Data) -> list[Step]:
    """The spec's `data.clean` list as step objects, in order."""
    makers = {"dedup": lambda o: ExactDedup(o["fields"] or data.fields.used),
              "normalize": lambda o: Normalize(data.fields.used, o["unicode"], o["whitespace"], o["drop_empty"])}
    return [makers[name](options) for step in data.clean for name, options in step.items()]
