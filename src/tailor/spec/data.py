"""`data:` — where the records come from, how they are cleaned, and how they are split."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from tailor.spec.base import Strict

SplitName = Literal["train", "validation", "test"]


class FilesSource(Strict):
    """Local files: txt, jsonl, csv/tsv, parquet; globs and folders."""

    type: Literal["files"]
    path: str | list[str] = Field(description="file, folder or glob, relative to the spec file")
    format: Literal["auto", "txt", "jsonl", "csv", "tsv", "parquet"] = "auto"
    unit: Literal["file", "paragraph", "line"] = Field(
        "paragraph", description="for txt: one record per file, per blank-line paragraph, or per line")
    split: SplitName | None = Field(None, description="put every record of this source in one split")

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)


class Fields(Strict):
    """Which record fields the model reads: `text` for a corpus, or `input` + `output` pairs."""

    text: str | None = None
    input: str | None = None
    output: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> Fields:
        if self.text is None and (self.input is None or self.output is None):
            raise ValueError("set `text` (a corpus) or both `input` and `output` (prompt/answer pairs)")
        if self.text is not None and (self.input is not None or self.output is not None):
            raise ValueError("set either `text` or `input`/`output`, not both")
        return self

    @property
    def used(self) -> list[str]:
        return [f for f in (self.text, self.input, self.output) if f is not None]


class DedupOptions(Strict):
    """Exact duplicates: drop a record whose model fields equal an earlier record's."""

    fields: list[str] | None = Field(None, description="fields compared; default: the model's fields")


class NormalizeOptions(Strict):
    """Unicode normal form and whitespace."""

    unicode: Literal["NFC", "NFKC", "none"] = "NFKC"
    whitespace: bool = Field(True, description="collapse runs of spaces, trim lines, at most one blank line")
    drop_empty: bool = True


CLEAN_STEPS: dict[str, type[BaseModel]] = {"dedup": DedupOptions, "normalize": NormalizeOptions}


class Split(Strict):
    train: float = Field(0.8, ge=0, le=1)
    validation: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    seed: int = 0
    shuffle: bool = Field(True, description="false: split in file order (contiguous blocks)")

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        total = self.train + self.validation + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + validation + test must add up to 1, got {total:g}")
        return self


class Data(Strict):
    sources: list[FilesSource] = Field(min_length=1)
    fields: Fields = Field(default_factory=lambda: Fields(text="text"))
    clean: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"normalize": {}}, {"dedup": {}}], validate_default=True,
        description="ordered steps, each {step_name: {options}}")
    split: Split = Field(default_factory=Split)

    @field_validator("clean")
    @classmethod
    def _steps(cls, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        resolved = []
        for i, step in enumerate(steps):
            if len(step) != 1:
                raise ValueError(f"item {i}: each step is one key, e.g. {{dedup: {{}}}}; got {sorted(step)}")
            (name, options), = step.items()
            if name not in CLEAN_STEPS:
                raise ValueError(f"item {i}: unknown step {name!r}; allowed: {', '.join(CLEAN_STEPS)}")
            try:
                opts = CLEAN_STEPS[name].model_validate(options or {})
            except ValidationError as e:
                problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
                raise ValueError(f"item {i} ({name}): {problems}") from None
            resolved.append({name: opts.model_dump()})
        return resolved
