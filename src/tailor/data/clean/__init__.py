"""Cleaning steps. Each is a small callable with one job: record -> record, or a drop reason.

A step says whether it may run on a shard of the data alone (`parallel`) or needs every earlier
record (dedup); steps that count more than in/kept/dropped keep a `counts` Counter.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from tailor.spec.clean import CLEAN_STEPS
from tailor.spec.data import Data


class Step(Protocol):
    name: str
    parallel: bool

    def __call__(self, record: dict) -> dict | str:
        """The kept (possibly changed) record, or a short reason for dropping it."""


def build_step(name: str, options: dict, data: Data) -> Step:
    """One step object from its spec name and options: the registered class, given the options as keywords."""
    kind = CLEAN_STEPS[name]
    module, cls = kind.implementation.split(":")
    return getattr(importlib.import_module(module), cls)(**kind.options.model_validate(options).arguments(data.fields))


def step_files(data: Data) -> list[str]:
    """Local files the cleaning steps read, e.g. label_join's labels."""
    return [f for step in data.clean for name, o in step.items() for f in CLEAN_STEPS[name].options.model_validate(o).files()]


def build_steps(data: Data) -> list[Step]:
    """The spec's `data.clean` list as step objects, in order."""
    return [build_step(name, options, data) for step in data.clean for name, options in step.items()]
