"""Retraining that only ever improves: a challenger is trained on the spec's data plus feedback
corrections, judged against the champion on the same held-out records, and promoted only when it
wins by the spec's margin. Every decision, either way, is recorded in the registry with its reason.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console

from tailor.errors import TailorError
from tailor.spec import Spec, load_spec
from tailor.spec.metrics import higher_is_better
from tailor.spec.data import FilesSource


def judged_metric(spec: Spec) -> tuple[str, bool]:
    """(metric, higher is better) that decides: retrain.metric, else the first target's, else loss."""
    chosen = spec.deploy.retrain.metric
    if chosen is None:
        chosen = spec.problem.targets[0].metric if spec.problem.targets else "loss"
    return chosen, higher_is_better(chosen)


def with_feedback(spec: Spec, corrections: list[dict], folder: Path) -> tuple[Spec, int]:
    """The spec with feedback corrections added as a training source (input/output data only)."""
    f = spec.data.fields
    if not corrections or f.input is None:
        return spec, 0
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"corrections-{len(corrections)}.jsonl"
    path.write_text("".join(json.dumps({f.input: c["input"], f.output: c["output"]}, ensure_ascii=False) + "\n"
                            for c in corrections), encoding="utf-8")
    spec = spec.model_copy(deep=True)
    spec.data.sources = [*spec.data.sources, FilesSource(type="files", path=str(path), split="train")]
    return spec, len(corrections)


def measure(model_dir: Path, spec: Spec, split: str, records: list[dict], metric: str) -> float:
    """The metric of one model on the held-out records, computed as the evaluate stage computes it."""
    from tailor.evaluate import split_rows
    from tailor.evaluate.predictions import summarize
    from tailor.evaluate.scoring import Reading
    from tailor.inference import Generator
    from tailor.spec.metrics import TABLE

    rows, _ = split_rows(Generator(model_dir), Reading.of(spec), split, records, TABLE[metric].generated)
    values, _ = summarize(rows, [metric], spec.evaluate.bootstrap)
    if f"{split}/{metric}" not in values:
        raise TailorError(f"deploy.retrain.metric: {metric!r} is not measured for this spec")
    return float(values[f"{split}/{metric}"])


def retrain(spec_path: Path, runs_dir: Path, home: Path, console: Console | None = None) -> dict:
    """One round: train a challenger, compare it with the champion, promote it only if it is better."""
    from tailor.splits import load_split
    from tailor.deploy.drift import reference_texts
    from tailor.deploy.feedback import FeedbackStore
    from tailor.deploy.registry import Registry
    from tailor.run import Pipeline

    console = console or Console(stderr=True)
    spec = load_spec(spec_path)
    options = spec.deploy.retrain
    registry = Registry(home / "registry")
    corrections = FeedbackStore(home / "feedback.db").corrections() if options.use_feedback else []
    spec, n_feedback = with_feedback(spec, corrections, Path(runs_dir) / spec.name / "feedback")
    console.print(f"retrain {spec.name}: {n_feedback} feedback correction(s) added to the training data")
    run_dir = Pipeline(spec, runs_dir, console).run()
    champion = registry.champion(spec.name)
    challenger = registry.add(run_dir / "train" / "model", spec.name,
                              metrics=json.loads((run_dir / "metrics.json").read_text()),
                              lineage={"run": str(run_dir), "spec": str(spec_path), "feedback_corrections": n_feedback,
                                       "parent": champion.version if champion else None},
                              reference=reference_texts(run_dir))
    metric, higher = judged_metric(spec)
    split = "test" if load_split(run_dir / "data", "test") else "validation"
    records = load_split(run_dir / "data", split)
    new = measure(challenger.path, spec, split, records, metric)
    decision = {"name": spec.name, "challenger": challenger.version, "metric": metric, "split": split,
                "challenger_value": new, "champion": None, "champion_value": None}
    if champion is None:
        promoted, reason = True, "no champion yet"
    else:
        old = measure(champion.path, spec, split, records, metric)
        gain = (new - old) if higher else (old - new)
        promoted = gain > options.margin
        decision |= {"champion": champion.version, "champion_value": old}
        reason = (f"{metric} on {split} ({len(records)} records): challenger {new:.4g} vs champion {old:.4g}; "
                  f"{'better' if gain > 0 else 'not better'} by {abs(gain):.4g}, margin {options.margin:g}")
    registry.record_decision(spec.name, challenger.version, decision["champion"], metric, new,
                             decision["champion_value"], promoted, reason)
    if promoted:
        registry.promote(spec.name, challenger.version, f"retrain: {reason}")
    decision |= {"promoted": promoted, "reason": reason, "run": str(run_dir)}
    console.print(f"{'promoted' if promoted else 'kept the champion'}: {reason}")
    return decision


def retrain_every(spec_path: Path, runs_dir: Path, home: Path, every: float, rounds: int | None,
                  console: Console | None = None) -> list[dict]:
    """Retrain now and then every `every` seconds (`rounds` times, or until interrupted)."""
    decisions = []
    while True:
        decisions.append(retrain(spec_path, runs_dir, home, console))
        if rounds is not None and len(decisions) >= rounds:
            return decisions
        time.sleep(every)
