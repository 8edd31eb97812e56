"""`data:` — where the records come from, how they are cleaned, annotated and split."""

from __future__ import annotations

from dataclasses import dataclass

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from tailor.spec.base import Duration, Strict
from tailor.spec.clean import CLEAN_STEPS

SplitName = Literal["train", "validation", "test"]
SPLIT_PIN = Field(None, description="put every record of this source in one split")
MAP = Field(default_factory=dict, description="record field -> column of this source, e.g. {text: body}")


def _resolve(base: Path, value: str) -> str:
    return value if Path(value).is_absolute() else str((base / value).resolve())


class FilesSource(Strict):
    """Local files: txt, md, jsonl, json, csv/tsv, parquet, html, pdf, Label Studio exports; .gz/.zst too."""

    type: Literal["files"]
    path: str | list[str] = Field(description="file, folder or glob, relative to the spec file")
    format: Literal["auto", "txt", "jsonl", "json", "csv", "tsv", "parquet", "html", "pdf", "label_studio"] = "auto"
    unit: Literal["file", "paragraph", "line"] = Field(
        "paragraph", description="for txt: one record per file, per blank-line paragraph, or per line")
    split: SplitName | None = SPLIT_PIN
    map: dict[str, str] = MAP

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    def resolve_paths(self, base: Path) -> None:
        paths = [_resolve(base, p) for p in self.paths]
        self.path = paths[0] if isinstance(self.path, str) else paths


class HFSource(Strict):
    """A Hugging Face dataset by hub name or local folder, through `datasets.load_dataset`."""

    type: Literal["hf_dataset"]
    name: str = Field(description="hub name (e.g. 'imdb') or a local folder (data files or save_to_disk output)")
    config: str | None = None
    hf_split: str = Field("train", description="the dataset's split to read")
    streaming: bool = Field(False, description="iterate without downloading/materialising the whole dataset")
    max_records: int | None = Field(None, ge=1)
    split: SplitName | None = SPLIT_PIN
    map: dict[str, str] = MAP

    def resolve_paths(self, base: Path) -> None:
        if not Path(self.name).is_absolute() and (base / self.name).exists():
            self.name = _resolve(base, self.name)


class WebSource(Strict):
    """A polite crawler: robots.txt, per-host rate limit, retries, on-disk cache; main text by trafilatura."""

    type: Literal["web"]
    seeds: list[str] = Field(min_length=1, description="start URLs")
    allow: list[str] = Field(default_factory=list, description="regexes; when given, a URL must match one")
    deny: list[str] = Field(default_factory=list, description="regexes; a URL matching one is never fetched")
    same_host: bool = Field(True, description="follow links only to the seeds' hosts")
    max_pages: int = Field(100, ge=1)
    max_depth: int = Field(2, ge=0, description="links followed from a seed")
    rate_limit: float = Field(1.0, gt=0, description="requests per second per host")
    retries: int = Field(2, ge=0, description="retries of a timeout or 5xx, with exponential backoff")
    backoff: Duration = Field(0.5, description="first retry delay; doubles each retry")
    timeout: Duration = Field(10.0, description="per request")
    cache: str = Field(".tailor-cache/web", description="folder of fetched pages (relative to the spec); "
                                                         "a re-run fetches nothing already there")
    user_agent: str = "tailor-crawler/0.1"
    min_chars: int = Field(1, ge=0, description="pages whose extracted text is shorter are skipped and counted")
    split: SplitName | None = SPLIT_PIN

    def resolve_paths(self, base: Path) -> None:
        self.cache = _resolve(base, self.cache)


class WarcSource(Strict):
    """WARC files (Common Crawl style): HTML responses, main text by trafilatura, URL kept."""

    type: Literal["warc"]
    path: str | list[str]
    max_records: int | None = Field(None, ge=1)
    split: SplitName | None = SPLIT_PIN

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    resolve_paths = FilesSource.resolve_paths


class SyntheticSource(Strict):
    """Generated records: Jinja templates over value tables, or a pretrained model writing from seed examples."""

    type: Literal["synthetic"]
    templates: dict[str, str] | None = Field(None, description="field -> Jinja template")
    values: dict[str, list[Any]] = Field(default_factory=dict, description="name -> values; every combination renders")
    rows: str | list[str] | None = Field(None, description="a JSONL/CSV table, or several joined on their shared "
                                                          "fields; each row (times each combination of `values`) is "
                                                          "one rendering context")
    when: str | None = Field(None, description="a Jinja expression; contexts where it is false are not rendered "
                                               "(e.g. `bucket(frame, opening) < 15` holds wordings out)")
    model: str | None = Field(None, description="a preset (smollm2-135m), model folder or .gguf that writes examples")
    seeds: str | list[dict[str, Any]] | None = Field(None, description="seed examples (JSONL file or inline list)")
    instruction: str = Field("Write one new example in the same format, different from these.",
                             description="what the model is asked to do")
    examples_per_prompt: int = Field(3, ge=1)
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.8, ge=0)
    count: int | None = Field(None, ge=1, description="records to make (templates: a seeded sample of the combinations)")
    seed: int = 0
    split: SplitName | None = SPLIT_PIN

    @model_validator(mode="after")
    def _one_kind(self) -> SyntheticSource:
        if (self.templates is None) == (self.model is None):
            raise ValueError("set `templates` (Jinja) or `model` (model-written examples), one of them")
        if self.model is not None and (not self.seeds or self.count is None):
            raise ValueError("a model source needs `seeds` (examples to imitate) and `count`")
        if self.when is not None and self.templates is None:
            raise ValueError("`when` selects template contexts: it needs `templates`")
        return self

    def resolve_paths(self, base: Path) -> None:
        if isinstance(self.rows, str):
            self.rows = _resolve(base, self.rows)
        elif self.rows:
            self.rows = [_resolve(base, r) for r in self.rows]
        if isinstance(self.seeds, str):
            self.seeds = _resolve(base, self.seeds)
        if self.model and (base / self.model).exists():
            self.model = _resolve(base, self.model)


@dataclass(frozen=True)
class SourceKind:
    """A registered data source: its options, and the module under tailor.data.sources with its
    `read(source, context)` (records) and `files(source, where)` (local files, for the cache key)."""

    options: type[Strict]
    module: str


# The registry: a new source is its file under tailor/data/sources plus its options above and one line here.
SOURCES: dict[str, SourceKind] = {
    "files": SourceKind(FilesSource, "tailor.data.sources.files"),
    "hf_dataset": SourceKind(HFSource, "tailor.data.sources.hf"),
    "web": SourceKind(WebSource, "tailor.data.sources.web"),
    "warc": SourceKind(WarcSource, "tailor.data.sources.warc"),
    "synthetic": SourceKind(SyntheticSource, "tailor.data.sources.synthetic"),
}
Source = Annotated[Union[tuple(k.options for k in SOURCES.values())], Field(discriminator="type")]


class Fields(Strict):
    """Which record fields the model reads: `text` for a corpus, `input` + `output` pairs (output: the label
    for label problems), with `rejected` beside them for preference pairs (output is then the preferred
    answer), or `messages`: conversations (chat data)."""

    text: str | None = None
    input: str | None = None
    output: str | None = None
    messages: str | None = Field(None, description="the field holding a conversation: OpenAI messages [{role, "
                                                   "content}] or ShareGPT conversations [{from, value}]; Alpaca "
                                                   "records (instruction/input/output) become one too")
    chat_format: Literal["auto", "openai", "sharegpt", "alpaca"] = Field(
        "auto", description="how `messages` is written; auto: by its keys (role/from), or Alpaca where a "
                            "record has `instruction` instead")
    rejected: str | None = Field(None, description="preference pairs (train.objective dpo/orpo): the dispreferred "
                                                    "answer; `output` holds the preferred one, `input` the prompt")

    @model_validator(mode="after")
    def _shape(self) -> Fields:
        kinds = [self.text is not None, self.input is not None or self.output is not None, self.messages is not None]
        if sum(kinds) > 1:
            raise ValueError("set one of `text` (a corpus), `input`/`output` (prompt/answer pairs) or `messages` "
                             "(conversations), not several")
        if self.messages is None and self.text is None and (self.input is None or self.output is None):
            raise ValueError("set `text` (a corpus), both `input` and `output` (prompt/answer pairs), or "
                             "`messages` (conversations)")
        if self.messages is None and self.chat_format != "auto":
            raise ValueError("`chat_format` says how `messages` is written: set `messages` too")
        if self.rejected is not None and self.input is None:
            raise ValueError("rejected: preference pairs need `input` (the prompt) and `output` (the preferred "
                             "answer), not `text` or `messages`")
        if self.rejected is not None and self.rejected in (self.input, self.output):
            raise ValueError(f"rejected: {self.rejected!r} is also the input or output field; the rejected answer "
                             "needs a field of its own, e.g. {input: prompt, output: chosen, rejected: rejected}")
        return self

    @property
    def used(self) -> list[str]:
        return [f for f in (self.text, self.input, self.output, self.messages, self.rejected) if f is not None]

    @property
    def answered(self) -> bool:
        """The data has answers to generate and compare: input/output pairs, or conversations."""
        return self.input is not None or self.messages is not None


class Split(Strict):
    train: float = Field(0.8, ge=0, le=1)
    validation: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    seed: int = 0
    shuffle: bool = Field(True, description="false: split in file order (contiguous blocks)")
    stratify: str | None = Field(None, description="field whose values keep their proportions in every split; "
                                                   "default for label problems: data.fields.output")
    group: str | None = Field(None, description="'near_duplicates' (MinHash clusters) or a field: records of one "
                                                "group always share a split")
    group_threshold: float = Field(0.8, gt=0, lt=1, description="similarity that joins near-duplicates into a group")
    leakage_check: bool = Field(True, description="count near-duplicate pairs that cross splits (in the report)")

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        total = self.train + self.validation + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + validation + test must add up to 1, got {total:g}")
        return self


class Engine(Strict):
    """Where the cleaning runs: in this process, or through datatrove's executor with several workers."""

    workers: int = Field(1, ge=1, description="processes for the per-record steps (datatrove LocalPipelineExecutor)")
    chunk_size: int = Field(10_000, ge=1, description="records per intermediate shard; memory holds about one")


class Data(Strict):
    sources: list[Source] = Field(min_length=1)
    fields: Fields = Field(default_factory=lambda: Fields(text="text"))
    clean: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"normalize": {}}, {"dedup": {}}], validate_default=True,
        description="ordered steps, each {step_name: {options}}")
    split: Split = Field(default_factory=Split)
    engine: Engine = Field(default_factory=Engine)
    on_error: Literal["stop", "skip"] = Field(
        "stop", description="a malformed record: stop with file:line, or skip it into data/rejected.jsonl")
    label_studio: bool = Field(False, description="also write data/label_studio.json (tasks in Label Studio's "
                                                  "import format, rule/model labels as predictions)")

    @field_validator("clean")
    @classmethod
    def _steps(cls, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        resolved = []
        for i, step in enumerate(steps):
            if not isinstance(step, dict) or len(step) != 1:
                raise ValueError(f"item {i}: each step is one key, e.g. {{dedup: {{}}}}; got {step!r}")
            (name, options), = step.items()
            if name not in CLEAN_STEPS:
                raise ValueError(f"item {i}: unknown step {name!r}; allowed: {', '.join(CLEAN_STEPS)}")
            try:
                opts = CLEAN_STEPS[name].options.model_validate(options or {})
            except ValidationError as e:
                problems = "; ".join((f"{'.'.join(map(str, err['loc']))}: " if err["loc"] else "")
                                     + err["msg"].removeprefix("Value error, ") for err in e.errors())
                raise ValueError(f"item {i} ({name}): {problems}") from None
            resolved.append({name: opts.model_dump()})
        return resolved

    def resolve_paths(self, base: Path) -> None:
        """Make every relative path in the section relative to `base` (the spec file's folder)."""
        for source in self.sources:
            source.resolve_paths(base)
        for step in self.clean:
            for options in step.values():
                if isinstance(options.get("path"), str):
                    options["path"] = _resolve(base, options["path"])
                if isinstance(options.get("model"), str) and (base / options["model"]).exists():
                    options["model"] = _resolve(base, options["model"])
