"""A model folder loaded into a serving engine: what the server hosts and what in-process answering uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tailor.inference.backends import load_backend
from tailor.inference.engine import Engine
from tailor.manifest import verify_manifest


@dataclass
class Loaded:
    engine: Engine
    version: str
    folder: Path


def load_engine(folder: Path, version: str, max_batch: int = 16, max_queue: int = 64, device: str = "cpu",
                verify: bool = True) -> Loaded:
    """The folder's model (verified against its manifest first) behind a batching engine."""
    if verify:
        verify_manifest(folder)
    return Loaded(Engine(load_backend(folder, device), max_batch, max_queue, version), version, folder)


class OneModel:
    """A host of one model that never swaps (the server's ModelHost also follows a registry)."""

    def __init__(self, loaded: Loaded):
        self.current = loaded

    @property
    def engine(self) -> Engine:
        return self.current.engine

    def stop(self) -> None:
        self.current.engine.drain(5)
