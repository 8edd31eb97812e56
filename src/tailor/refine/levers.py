"""The catalogue of levers: one entry per change refine can try, the findings it answers and the keys it sets.

A lever's `change` reads the current spec (and the diagnosed run) and returns the dotted spec keys
to set, or None where it does not apply (a dropout lever on a pretrained model, class weights for a
text problem). Every value is set explicitly, so it wins over the road's defaults. A lever without
`change` is advice only: it needs something refine cannot make (more labelled data, say), and the
report names it as the next thing to try. A new lever is one entry in LEVERS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tailor.refine.diagnose import Finding, RunFiles
from tailor.spec import Spec

Change = Callable[[Spec, RunFiles, dict[str, Finding]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Lever:
    name: str
    answers: tuple[str, ...]   # the finding rules that suggest it
    keys: tuple[str, ...]      # the spec keys it changes
    why: str
    change: Change | None = None  # None: advice only
    cost: float = 1.0          # the trial's expected wall time as a multiple of the run it changes


def _steps(spec: Spec, run: RunFiles) -> int:
    steps = spec.train.max_steps
    return steps if isinstance(steps, int) else int(run.summary.get("steps") or 100)


def _longer(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    return {"train.max_steps": 2 * _steps(spec, run)}


def _more_time(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    budget = spec.train.max_time or spec.problem.constraints.time_budget
    return {"train.max_time": 2 * budget} if budget else None


def _lr(factor: float) -> Change:
    def change(spec: Spec, run: RunFiles, found: dict) -> dict | None:
        return {"train.optimizer.lr": float(f"{spec.train.optimizer.lr * factor:.3g}")}
    return change


def _warmup(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    if (spec.train.schedule.warmup_ratio or 0) >= 0.1:
        return None
    return {"train.schedule.warmup_steps": None, "train.schedule.warmup_ratio": 0.1}


def _unfreeze(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    freeze = spec.model.adapt.freeze
    if spec.model.base == "scratch" or freeze is None or freeze.unfreeze_every is not None:
        return None
    # thaw one layer every eighth of the run, top down: the lower layers keep more of what they learnt
    return {"model.adapt.freeze.unfreeze_every": max(1, _steps(spec, run) // 8), "model.adapt.freeze.unit": "steps",
            "train.optimizer.lr": min(spec.train.optimizer.lr, 2e-4), "model.adapt.head_lr_scale": 20.0}


def _lora_rank(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    lora = spec.model.adapt.lora
    if lora is None or lora.r >= 64:
        return None
    return {"model.adapt.lora.r": 2 * lora.r, "model.adapt.lora.alpha": 2 * lora.alpha}


def _wider(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    arch = spec.model.arch
    if spec.model.base != "scratch" or arch.family != "transformer" or arch.size == "auto":
        return None
    return {"model.arch.n_embd": 2 * arch.n_embd}


def _deeper(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    if spec.model.base != "scratch" or spec.model.arch.n_layer >= 12:
        return None
    return {"model.arch.n_layer": spec.model.arch.n_layer + 1}


def _pretrained(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    if spec.model.base != "scratch" or spec.problem.output == "score" or spec.data.fields.messages is not None:
        return None
    base = "smollm2-135m" if spec.problem.output == "text" else "minilm-l6"
    return {"model.base": base, "tokenizer.type": "pretrained", "train.optimizer.lr": 5e-5 if base == "minilm-l6"
            else 2e-4}


def _dropout(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    if spec.model.base != "scratch" or spec.model.arch.dropout >= 0.3:
        return None
    return {"model.arch.dropout": round(spec.model.arch.dropout + 0.1, 2)}


def _weight_decay(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    wd = spec.train.optimizer.weight_decay
    return {"train.optimizer.weight_decay": 0.1 if wd < 0.1 else round(2 * wd, 4)} if wd < 0.5 else None


def _label_smoothing(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    if spec.problem.output != "label" or spec.train.loss.label_smoothing >= 0.1:
        return None
    return {"train.loss.label_smoothing": 0.1}


def _early_stopping(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    if spec.train.early_stopping is not None:
        return None
    return {"train.early_stopping": {"metric": "validation/loss", "patience": 2}}


def _class_weights(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    if spec.problem.output != "label":
        return None
    weights = dict(spec.train.loss.class_weights or {})
    if "class_imbalance" in found:
        counts = found["class_imbalance"].evidence["counts"]
        top = max(counts.values())
        weights |= {label: round(min(10.0, top / n), 3) for label, n in counts.items() if n * 3 <= top}
    if "confused_pair" in found:
        weights |= {label: max(2.0, weights.get(label, 1.0)) for label in found["confused_pair"].evidence["labels"]}
    labels = set(((run.data.get("labels") or {}).get("splits") or {}).get("train") or {})
    if labels and set(weights) >= labels and len(set(weights.values())) == 1:
        return None  # every class weighed alike is the plain loss again
    return {"train.loss.class_weights": weights} if weights != (spec.train.loss.class_weights or {}) else None


def _near_dedup(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    if any("near_dedup" in step for step in spec.data.clean):
        return None
    return {"data.clean.near_dedup": {}}


def _group_duplicates(spec: Spec, run: RunFiles, found: dict) -> dict | None:
    return None if spec.data.split.group else {"data.split.group": "near_duplicates"}


LEVERS: tuple[Lever, ...] = (
    Lever("higher-lr", ("underfitting", "still_improving"), ("train.optimizer.lr",),
          "the loss moves slowly: a larger step size", _lr(3.0)),
    Lever("longer-training", ("still_improving", "underfitting", "budget_cut", "target_unmet"),
          ("train.max_steps",),
          "the curve had not flattened: twice the steps", _longer, cost=2.0),
    Lever("more-time", ("budget_cut",), ("train.max_time",),
          "the budget cut the planned steps: twice its time for training", _more_time, cost=2.0),
    Lever("lower-lr", ("unstable",), ("train.optimizer.lr",), "the loss diverged or rose: a smaller step", _lr(1 / 3)),
    Lever("warmup", ("unstable",), ("train.schedule.warmup_ratio",), "a gentler start: 10% warmup", _warmup),
    Lever("unfreeze", ("frozen_body", "underfitting"), ("model.adapt.freeze.unfreeze_every",),
          "the frozen body limits what the head can separate: thaw layers top down (ULMFiT)", _unfreeze, cost=2.0),
    Lever("lora-rank", ("frozen_body", "underfitting"), ("model.adapt.lora.r", "model.adapt.lora.alpha"),
          "more adapter capacity: twice the LoRA rank", _lora_rank),
    Lever("wider-model", ("underfitting", "target_unmet"), ("model.arch.n_embd",), "more capacity: twice the width",
          _wider, cost=2.0),
    Lever("deeper-model", ("underfitting",), ("model.arch.n_layer",), "more capacity: one more layer", _deeper,
          cost=1.5),
    Lever("class-weights", ("confused_pair", "class_imbalance"), ("train.loss.class_weights",),
          "weigh the confused or rare classes more in the loss", _class_weights),
    Lever("dropout", ("overfitting",), ("model.arch.dropout",), "regularise: more dropout", _dropout),
    Lever("weight-decay", ("overfitting",), ("train.optimizer.weight_decay",), "regularise: more weight decay",
          _weight_decay),
    Lever("label-smoothing", ("overfitting", "confused_pair"), ("train.loss.label_smoothing",),
          "soften the targets: label smoothing 0.1", _label_smoothing),
    Lever("early-stopping", ("overfitting",), ("train.early_stopping",),
          "stop at the best validation pass", _early_stopping),
    Lever("group-duplicates", ("near_duplicates",), ("data.split.group",),
          "keep near-duplicates in one split, so validation measures generalisation", _group_duplicates),
    Lever("near-dedup", ("near_duplicates",), ("data.clean",),
          "a cleaning step: drop near-duplicates (MinHash), so no record is seen on both sides", _near_dedup),
    Lever("pretrained-road", ("underfitting", "still_improving"), ("model.base", "tokenizer.type"),
          "a pretrained model instead of scratch", _pretrained, cost=20.0),
    Lever("more-data-for-slice", ("weak_slice",), ("data.sources",),
          "add records like the weak slice: a synthetic source, or labels for unlabeled records of it"),
    Lever("check-cleaning", ("many_dropped",), ("data.clean",),
          "cleaning drops many records: check the drop reasons (data/dropped.jsonl) before adding data"),
)


@dataclass(frozen=True)
class Proposal:
    """A lever that applies to the current spec, the findings that suggest it, and the keys it would set."""

    lever: Lever
    findings: tuple[Finding, ...]
    changes: dict[str, Any] | None  # None: advice only


def propose(spec: Spec, run: RunFiles, findings: list[Finding]) -> list[Proposal]:
    """The levers the findings suggest, most-suggested first (catalogue order breaks ties)."""
    found = {f.rule: f for f in findings}
    out = []
    for lever in LEVERS:
        why = tuple(found[r] for r in lever.answers if r in found)
        if not why:
            continue
        changes = lever.change(spec, run, found) if lever.change else None
        if lever.change is None or changes:
            out.append(Proposal(lever, why, changes))
    order = {p.lever.name: i for i, p in enumerate(out)}
    return sorted(out, key=lambda p: (-len(p.findings), order[p.lever.name]))
