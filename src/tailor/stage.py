"""What a stage is: the spec fields and upstream folders it reads, and the function that gets exactly those.

Each stage package declares its `STAGE` here-shaped; the runner (`tailor.run`) resolves the
declared spec paths, hands the values to the function as keyword arguments and hashes exactly
those values for the cache key. A stage cannot read a spec field it did not declare: it never
sees the spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tailor.artifacts import hash_json

Files = Callable[..., dict[str, str | None]]


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    reads: parameter name -> dotted spec path ("" is the whole spec), e.g. {"fields": "data.fields"}.
    upstream: earlier stages whose folders it reads; each is passed as `<name>_dir`.
    files: (project, **the declared inputs) -> {path: sha256 or None} of the files beside the runs it reads.
    resumable: it also gets `work` (a folder that survives a crash) and `key` (its input hash).
    The function is called as run(out, progress=..., **inputs, **upstream folders[, work=, key=]).
    """

    name: str
    run: Callable[..., dict]
    reads: Mapping[str, str]
    upstream: tuple[str, ...] = ()
    files: Files | None = None
    resumable: bool = False
    project: bool = False               # it also gets `project`, the folder of this spec's runs
    publish: tuple[str, ...] = ()       # files of its folder that the runner copies to the run's root

    def inputs(self, spec: BaseModel) -> dict[str, Any]:
        """The declared spec values, by parameter name."""
        return {param: resolve(spec, path) for param, path in self.reads.items()}

    def call(self, spec: BaseModel, out: Path, progress=None, **extra: Any) -> dict:
        """Run the stage on a spec from Python: its declared inputs, plus upstream folders (`data_dir=...`) etc."""
        Path(out).mkdir(parents=True, exist_ok=True)
        return self.run(Path(out), progress=progress, **self.inputs(spec), **extra)

    def key_material(self, spec: BaseModel, project: Path) -> dict:
        """What the cache key hashes: the dumped inputs and the files they name."""
        inputs = self.inputs(spec)
        out = {"spec": {param: plain(value) for param, value in inputs.items()}}
        if self.files is not None:
            out["files"] = self.files(project, **inputs)
        return out

    def key(self, spec: BaseModel, project: Path, upstream: Mapping[str, str], version: str) -> str:
        """The stage's input hash: its declared inputs, the files they name and the upstream outputs."""
        return hash_json({"stage": self.name, "version": version, "inputs": self.key_material(spec, project),
                          "upstream": {u: upstream[u] for u in self.upstream}})


def resolve(node: Any, path: str) -> Any:
    """The value at a dotted path of a spec ('' is the spec itself)."""
    for part in path.split(".") if path else ():
        node = getattr(node, part)
    return node


def plain(value: Any) -> Any:
    """A value as JSON-ready data: pydantic models dumped whole (defaults included), containers element-wise."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def declared_paths(stages: tuple[Stage, ...]) -> dict[str, list[str]]:
    """Each declared spec path with the stages that read it."""
    out: dict[str, list[str]] = {}
    for stage in stages:
        for path in stage.reads.values():
            out.setdefault(path, []).append(stage.name)
    return out
