"""`tailor init`: ask the problem-definition questions and write a commented, valid spec."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tailor.errors import TailorError
from tailor.spec import parse_spec
from tailor.spec.evaluate import METRICS

_TARGET = re.compile(r"^\s*(?:(train|validation|test)/)?([a-z0-9_]+)\s*(>=|<=)\s*([-+0-9.eE]+)\s*$")


def parse_target(text: str) -> dict:
    """'exact_match >= 0.95', 'validation/loss <= 1.5' -> a target mapping."""
    m = _TARGET.match(text)
    if not m:
        raise TailorError(f"target {text!r}: expected 'metric >= value' or 'split/metric <= value', "
                          "e.g. 'exact_match >= 0.95'")
    split, metric, op, value = m.groups()
    return {"metric": metric, "split": split or "test", ("at_least" if op == ">=" else "at_most"): float(value)}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "my-model"


@dataclass
class Answers:
    domain: str
    task: str
    data: str
    name: str = ""
    output: str = "text"
    input_field: str | None = None
    output_field: str | None = None
    text_field: str = "text"
    targets: list[dict] = field(default_factory=list)
    device: str = "auto"
    time_budget: str | None = None
    max_memory: str | None = None


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def render(a: Answers) -> str:
    """The spec text, with comments that say what each part is for."""
    fields = (f"{{input: {_q(a.input_field)}, output: {_q(a.output_field or 'answer')}}}" if a.input_field
              else f"{{text: {_q(a.text_field)}}}")
    targets = "".join(f"\n    - {json.dumps(t)}" for t in a.targets) or " []"
    constraints = [f"    device: {a.device}            # auto | cpu | cuda | mps"]
    if a.time_budget:
        constraints.append(f"    time_budget: {a.time_budget}        # training stops when this wall time is spent")
    if a.max_memory:
        constraints.append(f"    max_memory: {a.max_memory}")
    # with a budget the step count is left to the plan, which fills it (tailor.spec.roads)
    steps = "  # max_steps: left out, planned to fill the time budget\n" if a.time_budget else "  max_steps: 1000\n"
    return f"""# Tailor spec, written by `tailor init` on {date.today().isoformat()}.
# Check it:   tailor spec check THIS_FILE      (every default: tailor spec show THIS_FILE)
# Build it:   tailor run THIS_FILE
name: {a.name or slug(a.task)}
problem:
  domain: {_q(a.domain)}   # who the model serves
  task: {_q(a.task)}   # what it must do
  output: {a.output}              # text | label | token-labels | score
  targets:{targets}
  # each target reads <split>/<metric> after evaluation; the report marks it met or not met
  constraints:
{chr(10).join(constraints)}
data:
  sources:
    - {{type: files, path: {_q(a.data)}}}   # txt, jsonl, csv, tsv, parquet; a glob or a folder
  fields: {fields}   # input/output pairs, or text for a plain corpus
  clean:                        # ordered steps; each drops records with a reason, counted in data/report.json
    - normalize: {{}}
    - dedup: {{}}
  split: {{train: 0.8, validation: 0.1, test: 0.1, seed: 0}}
tokenizer: {{type: bpe, vocab_size: 4096}}   # byte-level BPE trained on your train split
model:
  base: scratch
  arch: {{family: transformer, n_layer: 4, n_head: 4, n_embd: 128}}
train:
{steps}  batch_size: 32
  optimizer: {{name: adamw, lr: 1.0e-3}}
"""


def data_problem(pattern: str, spec_dir: Path) -> str | None:
    """None when the data path (relative to the spec's folder) names at least one file; else what is wrong."""
    from tailor.data.sources.files import expand

    path = Path(pattern).expanduser()
    try:
        expand([str(path if path.is_absolute() else Path(spec_dir) / path)], "data")
    except TailorError:
        where = "" if path.is_absolute() else f" (relative to {Path(spec_dir).resolve()}, where the spec goes)"
        return f"no file matches {pattern!r}{where}; give a file, a folder of data files or a glob such as 'data/*.jsonl'"
    return None


def build_spec_text(a: Answers) -> str:
    """Render and validate; an error names what to change."""
    if a.output not in METRICS:
        raise TailorError(f"output {a.output!r}: available kinds are {', '.join(METRICS)}")
    text = render(a)
    parse_spec(text, "<tailor init>")
    return text
