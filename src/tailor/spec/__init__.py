"""The spec: one YAML file that says what to build. Loading, validation, defaults, saving.

Importing this package does not import torch.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, model_validator

from tailor.artifacts import hash_json
from tailor.errors import TailorError
from tailor.spec.base import NAME_PATTERN, Strict
from tailor.spec.data import Data, Source
from tailor.spec.deploy import Deploy
from tailor.spec.evaluate import METRICS, Evaluate
from tailor.spec.metrics import TABLE, chosen_metrics, preference_metrics
from tailor.spec.model import ARCH_TAGS, HEAD_FOR_OUTPUT, ModelSpec, TokenizerSpec, head_for
from tailor.spec.problem import Problem, Target
from tailor.spec.roads import apply_road, road_of
from tailor.spec.train import Train, Tune

__all__ = ["Spec", "load_spec", "parse_spec", "dump_spec", "show_spec", "open_tree", "spec_hash", "Target"]


class Spec(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="names the run folder")
    problem: Problem
    data: Data
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: Train = Field(default_factory=Train)
    tune: Tune | None = None
    evaluate: Evaluate = Field(default_factory=Evaluate)
    deploy: Deploy = Field(default_factory=Deploy)
    # dotted path -> why, for each value Tailor chose because the spec left it out (shown by `tailor spec show`)
    _chosen: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        kind = self.problem.output
        if kind not in METRICS:
            raise ValueError(f"problem.output: {kind!r} has no training road yet; available: {', '.join(METRICS)}")
        allowed = METRICS[kind]
        pairs = self.data.fields.answered
        for i, target in enumerate(self.problem.targets):
            if target.metric not in allowed:
                raise ValueError(f"problem.targets[{i}].metric: {target.metric!r} is not measured for "
                                 f"output {kind!r}; allowed: {', '.join(allowed)}")
            if TABLE[target.metric].generated and not pairs:
                raise ValueError(f"problem.targets[{i}].metric: {target.metric!r} needs input/output data "
                                 "(data.fields.input and data.fields.output) or conversations (data.fields.messages)")
        for name in self.evaluate.metrics or []:
            if name not in allowed:
                raise ValueError(f"evaluate.metrics: {name!r} is not measured for output {kind!r}; "
                                 f"allowed: {', '.join(allowed)}")
        chosen: dict[str, str] = {}
        if self.model.base != "scratch" and "type" not in self.tokenizer.model_fields_set:
            self.tokenizer.type = "pretrained"  # a pretrained model reads its own tokenizer's ids unless told otherwise
            chosen["tokenizer.type"] = f"follows the pretrained model.base {self.model.base!r}"
        elif "type" not in self.tokenizer.model_fields_set:
            chosen["tokenizer.type"] = "default for a scratch model: trained on the data"
        if self.tokenizer.type == "pretrained" and self.tokenizer.source is None and self.model.base == "scratch":
            raise ValueError("tokenizer.type pretrained needs tokenizer.source (or a pretrained model.base)")
        self._check_model(kind, pairs)
        budget = self.problem.constraints.time_budget is not None or self.train.max_time is not None
        chosen.update(apply_road(self.train, self.model.adapt, self.road, budget))
        self._chosen = chosen
        self._check_objective(kind)
        return self

    @property
    def road(self) -> str:
        """The training road: scratch, full fine-tune, head only, LoRA, QLoRA or preference (tailor.spec.roads)."""
        return road_of(self.model.base, self.model.adapt, self.train.objective)

    @property
    def chosen(self) -> dict[str, str]:
        """Dotted path -> reason, for each value chosen by the road (or the model) because the spec left it out."""
        return dict(self._chosen)

    def _check_objective(self, kind: str) -> None:
        """A preference objective learns from prompt / preferred / rejected triples of a language model."""
        objective = self.train.objective
        watched = self.tune.metric.rpartition("/")[2] if self.tune is not None else None
        if watched in preference_metrics() and objective == "likelihood":
            raise ValueError(f"tune.metric: {watched!r} is measured only by a preference objective "
                             "(train.objective dpo or orpo)")
        if objective == "likelihood":
            return
        if kind != "text":
            raise ValueError(f"train.objective: {objective!r} tunes a language model (problem.output: text), "
                             f"not a {kind!r} head")
        if self.data.fields.rejected is None:
            raise ValueError(f"data.fields.rejected: train.objective {objective!r} learns from preference pairs; "
                             "name the field of the rejected answer beside input (the prompt) and output (the "
                             "preferred answer), e.g. {input: prompt, output: chosen, rejected: rejected}")

    def _check_model(self, kind: str, pairs: bool) -> None:
        """The head fits problem.output, the data has a label field, a pretrained base reads its own tokens."""
        expected = HEAD_FOR_OUTPUT[kind]
        if self.model.head not in ("auto", expected):
            raise ValueError(f"model.head: {self.model.head!r} does not fit problem.output {kind!r}; "
                             f"expected {expected!r} (or auto)")
        if self.data.fields.messages is not None and kind != "text":
            raise ValueError(f"data.fields.messages: conversations train a model that writes the assistant's turns "
                             f"(problem.output: text), not {kind!r}")
        if self.data.fields.messages is not None and self.tokenizer.type != "pretrained":
            raise ValueError("data.fields.messages: conversations are read through the model's chat template; "
                             "use a pretrained model.base whose tokenizer has one (e.g. smollm2-135m), or "
                             "tokenizer: {type: pretrained, source: ...}")
        if kind != "text" and not pairs:
            raise ValueError(f"problem.output {kind!r}: the label is read from data.fields.output and the text from "
                             "data.fields.input; set both, e.g. {input: text, output: intent}")
        arch = self.model.arch
        if getattr(arch, "bidirectional", False) and expected == "causal_lm":
            raise ValueError("model.arch.bidirectional: a language model reads left to right; bidirectional "
                             "recurrent encoders are for label, token-labels and score outputs")
        lora = self.model.adapt.lora
        if lora is not None and lora.quantize != "none" and self.model.base == "scratch":
            raise ValueError(f"model.adapt.lora.quantize: {lora.quantize} (QLoRA) quantizes a pretrained base; "
                             "model.base is scratch (set a pretrained model.base, or quantize: none)")
        if self.model.base != "scratch" and self.tokenizer.type != "pretrained":
            raise ValueError(f"tokenizer.type: {self.tokenizer.type!r} with the pretrained model.base "
                             f"{self.model.base!r}: a pretrained model reads its own tokenizer's ids; "
                             "set tokenizer.type: pretrained (or leave tokenizer.type out: it follows the model)")

    @property
    def head(self) -> str:
        """The model head: model.head, or the one problem.output implies."""
        return head_for(self.problem.output, self.model.head)

    def metric_names(self) -> list[str]:
        """Metrics to compute: the chosen (or default) ones plus every target's."""
        return chosen_metrics(self.evaluate.metrics, self.problem.output, self.data.fields.answered,
                              self.problem.targets)


def _field_type(model: type[BaseModel], key: str) -> Any:
    field = model.model_fields.get(key)
    return field.annotation if field else None


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The pydantic models a type annotation can hold (through Optional, list, dict, Union)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(tp):
        out += _models_in(arg)
    return out


# data.sources[i] is chosen by its `type`; pydantic puts that tag in error locations
_UNION_TAGS = {typing.get_args(m.model_fields["type"].annotation)[0] for m in _models_in(Source)}


def _allowed_keys(loc: tuple) -> list[str]:
    """Keys a spec may have at the mapping that holds loc[-1]."""
    current: list[type[BaseModel]] = [Spec]
    for part in loc[:-1]:
        if isinstance(part, int) or not current:
            continue
        tagged = [m for m in current if _is_tag(m, part)]
        if tagged:  # a discriminated union's tag names the member model
            current = tagged
            continue
        nxt: list[type[BaseModel]] = []
        for model in current:
            nxt += _models_in(_field_type(model, part)) if part in model.model_fields else []
        # a discriminated union's tag (e.g. 'recurrent') picks the member named after it
        current = nxt or [m for m in current if m.__name__.lower().startswith(str(part))] or current
    return sorted({k for m in current for k in m.model_fields})


def _is_tag(model: type[BaseModel], part: object) -> bool:
    """Whether part is the `type` literal that selects model in a discriminated union (e.g. sources)."""
    field = model.model_fields.get("type")
    return field is not None and typing.get_origin(field.annotation) is typing.Literal and \
        typing.get_args(field.annotation) == (part,)


def _tag_at(part: object) -> bool:
    """Whether part, right after a list index, is a union tag rather than a key of the spec."""
    return isinstance(part, str) and part in _UNION_TAGS


def _line_of(text: str, loc: tuple) -> int | None:
    """1-based YAML line of the key path loc, or of its nearest existing parent."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == part]
            if not match:
                break
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def format_errors(error: ValidationError, text: str, source: str) -> str:
    """One line per problem: 'file:line: key.path: what is wrong (what is allowed)'."""
    lines = []
    for err in error.errors():
        full = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        loc = tuple(p for i, p in enumerate(full) if not (i and isinstance(full[i - 1], int) and _tag_at(p))
                    and not (i and full[i - 1] == "arch" and p in ARCH_TAGS))  # union tags name no key
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(full)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "") + f"; allowed: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        line = _line_of(text, loc)
        where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {_dotted(loc) or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_spec(text: str, source: str = "<spec>", base_dir: Path | None = None) -> Spec:
    """Validate YAML text; relative data paths are resolved against base_dir."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise TailorError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise TailorError(f"{source}: a spec is a YAML mapping with keys name, problem, data, ...")
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        raise TailorError(f"{source}: the spec has {e.error_count()} problem(s):\n" + format_errors(e, text, source)) from None
    if base_dir is not None:
        spec.data.resolve_paths(base_dir)
    return spec


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; errors name the file, line and key path."""
    path = Path(path)
    if not path.is_file():
        raise TailorError(f"{path}: spec file not found")
    return parse_spec(path.read_text(encoding="utf-8"), str(path), path.resolve().parent)


def dump_spec(spec: Spec) -> str:
    """The spec with every default filled in, as YAML."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100)


def open_tree(spec: Spec, keep: tuple[str, ...] = ()) -> dict:
    """The spec's dump without the values chosen for it (spec.chosen) but those in `keep`: validated again with
    another value changed (a tuning trial, an ablation variant), it chooses them again for its own road."""
    tree = spec.model_dump(mode="json")
    for dotted in spec.chosen:
        if dotted in keep:
            continue
        *parents, last = dotted.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node.pop(last, None)
    return tree


def show_spec(spec: Spec) -> str:
    """dump_spec, with a comment on each value the road chose saying why (`lr: 5.0e-05  # road: ...`)."""
    text = dump_spec(spec)
    lines = text.splitlines()
    for dotted, why in spec.chosen.items():
        line = _line_of(text, tuple(dotted.split(".")))
        if line is not None:
            lines[line - 1] += f"   # {why}"
    return "\n".join(lines) + "\n"


def spec_hash(spec: Spec) -> str:
    """A short content hash of the resolved spec: names its runs and its study results."""
    return hash_json(spec.model_dump(mode="json"))[:16]
