"""Diagnosis of one finished run from its own files: which targets are unmet, and what the evidence says.

Each rule is a small function over a run's files returning a `Finding` (what it saw, with the
numbers) or None. A rule that lacks its evidence (a run without error analysis, say) finds nothing.
The thresholds are deliberately coarse: a finding only makes a lever worth trying, and the trial
run, judged with an interval, decides whether the change helps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tailor import encryption
from tailor.errors import TailorError
from tailor.report import judge_targets, read_jsonl
from tailor.spec import Spec, parse_spec


@dataclass(frozen=True)
class Finding:
    """What one rule saw in a run: its name, a sentence with the numbers, and the numbers themselves."""

    rule: str
    summary: str
    evidence: dict = field(default_factory=dict)


@dataclass
class RunFiles:
    """The files of a finished run that the rules read (each empty when the run lacks it)."""

    run_dir: Path
    spec: Spec
    summary: dict          # train/summary.json
    curve: list[dict]      # train/metrics.jsonl: train and validation rows
    results: dict          # evaluate/results.json: metrics and intervals
    errors: dict           # evaluate/errors.json: the error analysis
    data: dict             # data/report.json

    @property
    def metrics(self) -> dict[str, float]:
        return self.results.get("metrics", {})

    @property
    def intervals(self) -> dict[str, list[float]]:
        return self.results.get("intervals", {})


def _json(path: Path) -> dict:
    return json.loads(encryption.read_text(path)) if encryption.exists(path) else {}


def load_run(run_dir: Path) -> RunFiles:
    """Read a run folder; an error when it holds no resolved spec or no evaluation."""
    run_dir = Path(run_dir)
    spec_path = run_dir / "spec.resolved.yaml"
    if not spec_path.is_file():
        raise TailorError(f"{run_dir}: not a run folder (no spec.resolved.yaml)")
    if not encryption.exists(run_dir / "evaluate" / "results.json"):
        raise TailorError(f"{run_dir}: the run has no evaluation yet (evaluate/results.json); finish it with tailor run")
    spec = parse_spec(spec_path.read_text(encoding="utf-8"), str(spec_path))
    return RunFiles(run_dir, spec, _json(run_dir / "train" / "summary.json"),
                    read_jsonl(run_dir / "train" / "metrics.jsonl"), _json(run_dir / "evaluate" / "results.json"),
                    _json(run_dir / "evaluate" / "errors.json"), _json(run_dir / "data" / "report.json"))


def target_gaps(run: RunFiles) -> list[dict]:
    """Each target as the report judges it, plus its gap: how far the value is from the bound (0 when met)."""
    out = []
    for t, judged in zip(run.spec.problem.targets, judge_targets(run.spec.problem.targets, run.metrics, run.intervals)):
        value = judged["value"]
        gap = None if value is None else max(0.0, (t.bound - value) if t.at_least is not None else (value - t.bound))
        out.append({**judged, "gap": gap})
    return out


def target_unmet(run: RunFiles) -> Finding | None:
    """A measured target is missed, or met with an interval that crosses its bound: the gap is evidence too."""
    missed = [t for t in target_gaps(run) if t["value"] is not None and
              (not t["met"] or t["certainty"] == "interval crosses the bound")]
    if not missed:
        return None
    return Finding("target_unmet", "; ".join(f"{t['target']}: {t['value']:.4g}" + (
        f" [{t['interval'][0]:.4g}, {t['interval'][1]:.4g}]" if t["interval"] else "") + (
        f", {t['gap']:.4g} short" if t["gap"] else ", the interval crosses the bound") for t in missed),
        {"targets": missed})


def _losses(run: RunFiles, split: str) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in run.curve if r.get("split") == split and isinstance(r.get("loss"), float)]


def _ends(values: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last tenth of a noisy curve (at least one point each)."""
    k = max(1, len(values) // 10)
    return sum(values[:k]) / k, sum(values[-k:]) / k


def still_improving(run: RunFiles) -> Finding | None:
    """Validation loss was still falling at the last pass (a twentieth or more of all it had fallen), and the run
    ended by its step count or budget rather than by early stopping."""
    val = [v for _, v in _losses(run, "validation")]
    train = [v for _, v in _losses(run, "train") if math.isfinite(v)]
    stopped = str(run.summary.get("stopped_by", ""))
    if len(val) < 3 or not train or stopped.startswith("early stopping") or val[-1] > min(val):
        return None
    fallen = max(train[0], val[0]) - val[-1]
    share = (val[-2] - val[-1]) / fallen if fallen > 0 else 0.0
    if share < 0.05:
        return None
    return Finding("still_improving", f"validation loss fell {val[-2]:.4g} -> {val[-1]:.4g} in the last interval, "
                   f"{share:.0%} of all it fell, and training stopped by {stopped or 'its step count'}",
                   {"validation_loss": val, "last_share": share, "stopped_by": stopped,
                    "steps": run.summary.get("steps")})


def underfitting(run: RunFiles) -> Finding | None:
    """Train loss barely fell: the model learns too slowly (rate too low, too few steps, too small or frozen)."""
    train = [v for _, v in _losses(run, "train") if math.isfinite(v)]
    if len(train) < 5:
        return None
    first, last = _ends(train)
    if first <= 0 or last < 0.75 * first:
        return None
    return Finding("underfitting", f"train loss barely moved: {first:.4g} -> {last:.4g} ({last / first - 1:+.0%})",
                   {"train_loss_start": first, "train_loss_end": last, "steps": run.summary.get("steps")})


def overfitting(run: RunFiles) -> Finding | None:
    """Validation loss rose after its best pass while train loss kept falling."""
    val, train = _losses(run, "validation"), _losses(run, "train")
    if len(val) < 3 or not train:
        return None
    best_step, best = min(val, key=lambda p: p[1])
    final = val[-1][1]
    after = [v for s, v in train if s > best_step]
    before = [v for s, v in train if s <= best_step]
    if best_step == val[-1][0] or final < best * 1.05 or not after or not before:
        return None
    if sum(after[-3:]) / len(after[-3:]) >= sum(before[-3:]) / len(before[-3:]):
        return None
    return Finding("overfitting", f"validation loss was best at step {best_step} ({best:.4g}) and rose to "
                   f"{final:.4g} by the end while train loss kept falling",
                   {"best_step": best_step, "best_validation_loss": best, "final_validation_loss": final})


def unstable(run: RunFiles) -> Finding | None:
    """Train loss became non-finite, spiked to twice its start, or ended above it: the rate is too high."""
    steps = _losses(run, "train")
    stopped = str(run.summary.get("stopped_by", ""))
    if stopped.startswith("non-finite") or any(not math.isfinite(v) for _, v in steps):
        return Finding("unstable", f"training became non-finite ({stopped or 'a non-finite train loss'})",
                       {"stopped_by": stopped})
    if len(steps) < 5:
        return None
    start = steps[0][1]
    peak_step, peak = max(steps, key=lambda p: p[1])
    _, last = _ends([v for _, v in steps])
    if peak > 2 * start:
        return Finding("unstable", f"train loss spiked from {start:.4g} to {peak:.4g} at step {peak_step}",
                       {"train_loss_start": start, "peak": peak, "peak_step": peak_step, "train_loss_end": last})
    if last > start * 1.05:
        return Finding("unstable", f"train loss rose from {start:.4g} to {last:.4g}",
                       {"train_loss_start": start, "train_loss_end": last})
    return None


def budget_cut(run: RunFiles) -> Finding | None:
    """The time budget set the step count (the plan filled it) or stopped training before the planned steps."""
    planned, fitted, ran = (run.summary.get(k) for k in ("planned_steps", "schedule_steps", "steps"))
    stopped, plan = str(run.summary.get("stopped_by", "")), str(run.summary.get("plan") or "")
    if stopped.startswith("time budget") or (planned and fitted and fitted < planned):
        return Finding("budget_cut", f"the time budget allowed {ran} of {planned} planned steps",
                       {"planned_steps": planned, "steps": ran, "seconds": run.summary.get("seconds")})
    if "budget" in plan:
        return Finding("budget_cut", f"the budget chose the step count: {plan}",
                       {"plan": plan, "steps": ran, "seconds": run.summary.get("seconds")})
    return None


def frozen_body(run: RunFiles) -> Finding | None:
    """Most of a pretrained model stays fixed (head only, LoRA, frozen layers without thawing)."""
    road, freeze = run.spec.road, run.spec.model.adapt.freeze
    frozen = freeze is not None and freeze.bottom_layers not in (0, None) and freeze.unfreeze_every is None
    if road not in ("head only", "LoRA", "QLoRA") and not frozen:
        return None
    lora = run.spec.model.adapt.lora
    return Finding("frozen_body", f"the {road} road trains only " + (f"rank-{lora.r} adapters" if lora else
                   "the layers above the frozen ones") + " of the pretrained model",
                   {"road": road, "lora_r": lora.r if lora else None})


def confused_pair(run: RunFiles) -> Finding | None:
    """One (expected, predicted) pair holds a large share of the errors."""
    pairs, errors = run.errors.get("confused") or [], run.errors.get("errors") or 0
    if not pairs or not errors:
        return None
    top = pairs[0]
    share = top["count"] / errors
    if top["count"] < 3 or share < 0.2:
        return None
    labels = sorted({p[k] for p in pairs[:3] if p["count"] >= max(2, top["count"] // 2)
                     for k in ("expected", "predicted")})
    return Finding("confused_pair", f"{top['count']} of {errors} errors ({share:.0%}) are {top['expected']!r} "
                   f"answered as {top['predicted']!r}", {"pairs": pairs[:3], "labels": labels,
                                                         "split": run.errors.get("split")})


def _slice_groups(errors: dict) -> list[tuple[str, list[dict]]]:
    return [(f"{name}", items) for name, items in (errors.get("slices") or {}).items()] + \
        [("input length", [{**b, "value": b["bucket"]} for b in errors.get("length_buckets") or []])]


def weak_slice(run: RunFiles) -> Finding | None:
    """A metadata value or an input-length bucket whose answers are much worse than the rest."""
    worst = None
    for name, items in _slice_groups(run.errors):
        scored = [s for s in items if "exact_match" in s and s.get("examples", 0) >= 5]
        total = sum(s["examples"] for s in scored)
        if len(scored) < 2 or not total:
            continue
        overall = sum(s["exact_match"] * s["examples"] for s in scored) / total
        for s in scored:
            gap = overall - s["exact_match"]
            if gap >= 0.15 and (worst is None or gap > worst[0]):
                worst = (gap, name, s, overall)
    if worst is None:
        return None
    gap, name, s, overall = worst
    return Finding("weak_slice", f"{name} = {s['value']}: exact match {s['exact_match']:.2f} on {int(s['examples'])} "
                   f"examples against {overall:.2f} overall", {"field": name, "value": s["value"], "gap": gap,
                                                               "examples": s["examples"]})


def class_imbalance(run: RunFiles) -> Finding | None:
    """The training split's largest class outnumbers its smallest three to one or more."""
    counts = ((run.data.get("labels") or {}).get("splits") or {}).get("train") or {}
    if len(counts) < 2 or min(counts.values()) <= 0:
        return None
    big, small = max(counts.values()), min(counts.values())
    if big < 3 * small:
        return None
    rare = sorted(k for k, v in counts.items() if v * 3 <= big)
    return Finding("class_imbalance", f"train classes range from {small} to {big} examples; rare: {', '.join(rare)}",
                   {"counts": counts, "rare": rare})


def near_duplicates(run: RunFiles) -> Finding | None:
    """Near-duplicate records sit on both sides of a split: validation flatters the model."""
    dup = run.data.get("duplicates") or {}
    pairs = dup.get("cross_split_pairs")
    if not pairs or dup.get("grouped_by"):
        return None
    return Finding("near_duplicates", f"{pairs} near-duplicate pairs cross the splits (not grouped)",
                   {"cross_split_pairs": pairs, "near_duplicate_pairs": dup.get("near_duplicate_pairs")})


def many_dropped(run: RunFiles) -> Finding | None:
    """Cleaning dropped a tenth or more of the records it read."""
    loaded, dropped = run.data.get("loaded") or 0, run.data.get("dropped") or 0
    if not loaded or dropped < 0.1 * loaded:
        return None
    reasons: dict[str, int] = {}
    for step in run.data.get("steps") or []:
        for why, n in (step.get("dropped") or {}).items():
            reasons[f"{step['step']}: {why}"] = reasons.get(f"{step['step']}: {why}", 0) + n
    return Finding("many_dropped", f"cleaning dropped {dropped} of {loaded} records ({dropped / loaded:.0%})",
                   {"dropped": dropped, "loaded": loaded, "reasons": reasons})


RULES: tuple[Callable[[RunFiles], Finding | None], ...] = (
    target_unmet, unstable, budget_cut, still_improving, underfitting, overfitting, frozen_body, confused_pair,
    weak_slice, class_imbalance, near_duplicates, many_dropped)


def diagnose(run: RunFiles) -> list[Finding]:
    """Every rule's finding on the run, in the rules' order."""
    return [f for f in (rule(run) for rule in RULES) if f is not None]
