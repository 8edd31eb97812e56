"""Ablation studies: run each variant of a spec (key overrides, same budget, N seeds) as an
ordinary cached run, and compare each metric with the baseline's, with bootstrap intervals.

Runs live in `<runs>/<name>/ablations/<arm>-seed<k>/<run id>/`; every arm may reuse finished
stages of the others and of the spec's own runs, so an interrupted study resumes where it stopped
and a repeated one costs nothing. The results go to `<runs>/<name>/ablations/ablation-<spec hash>.json`
(with .png and .html beside it), and the spec's report gains the ablation section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from tailor.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text
from tailor.errors import TailorError
from tailor.evaluate.bootstrap import difference
from tailor.evaluate.metrics import metric_columns
from tailor.page import document
from tailor.evaluate.predictions import METRICS, read_predictions
from tailor.evaluate.sections import ablation_plot, ablation_section
from tailor.report import results_path
from tailor.spec import Spec
from tailor.spec.evaluate import Ablation, variant_name

OFF = (False, None, "off")


def _descend(node: Any, part: str, where: str) -> Any:
    """One step down a spec: a mapping key, a list index, or the step of a list of {name: options} steps."""
    if isinstance(node, dict):
        if node.get(part) is None:
            node[part] = {}
        return node[part]
    if isinstance(node, list):
        if part.isdigit() and int(part) < len(node):
            return node[int(part)]
        for item in node:
            if isinstance(item, dict) and list(item) == [part]:
                if item[part] is None:
                    item[part] = {}
                return item[part]
    raise TailorError(f"{where}: no {part!r} here to change")


def set_key(raw: dict, dotted: str, value: Any, where: str) -> None:
    """Set a dotted key in a raw spec; in a list of steps (data.clean), `off` removes the step."""
    *parents, last = dotted.split(".")
    node: Any = raw
    for part in parents:
        node = _descend(node, part, f"{where}: {dotted}")
    if isinstance(node, list):
        steps = [i for i, item in enumerate(node) if isinstance(item, dict) and list(item) == [last]]
        if value in OFF:
            if not steps:
                raise TailorError(f"{where}: {dotted}: there is no {last!r} step to turn off")
            del node[steps[0]]
        elif steps:
            node[steps[0]] = {last: value or {}}
        else:
            node.append({last: value if isinstance(value, dict) else {}})
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise TailorError(f"{where}: {dotted}: {'.'.join(parents)} holds a value, not keys")


def variant_spec(spec: Spec, overrides: dict[str, Any], seed: int, where: str) -> Spec:
    """The spec with the overrides applied and seeds shifted by `seed`; its own ablation cleared."""
    from tailor.spec import open_tree

    raw = open_tree(spec)  # what the baseline's road chose is chosen again for the variant's (model.base, adapt)
    for dotted, value in overrides.items():
        if dotted != "name":
            set_key(raw, dotted, value, where)
    raw["train"]["seed"] += seed
    raw["model"]["seed"] += seed
    raw["evaluate"]["ablation"] = Ablation().model_dump(mode="json")
    try:
        return Spec.model_validate(raw)
    except ValidationError as e:
        from tailor.spec import format_errors

        raise TailorError(f"{where}: the variant is not a valid spec:\n" + format_errors(e, "", where)) from None


def study_metrics(spec: Spec) -> list[str]:
    """The flat metric keys the study compares (checked against what evaluation measures)."""
    cfg = spec.evaluate.ablation
    splits = set(spec.evaluate.splits) | {t.split for t in spec.problem.targets}
    default = [t.key for t in spec.problem.targets] + (["validation/loss"] if "validation" in splits else [])
    keys = cfg.metrics or list(dict.fromkeys(default))
    names = spec.metric_names()
    for key in keys:
        split, _, name = key.partition("/")
        if split not in ("train", "validation", "test") or name not in METRICS:
            raise TailorError(f"evaluate.ablation.metrics: {key!r} is not a metric key like 'test/exact_match'")
        if name not in names or split not in splits:
            raise TailorError(f"evaluate.ablation.metrics: {key!r} is not measured by this spec's evaluation "
                              f"(splits {', '.join(sorted(splits))}; metrics {', '.join(names)})")
    return keys


def arms(spec: Spec) -> list[tuple[str, dict[str, Any]]]:
    """(name, overrides) of the baseline and every variant."""
    return [("baseline", {})] + [(variant_name(v), {k: x for k, x in v.items() if k != "name"})
                                 for v in spec.evaluate.ablation.variants]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


def _kept(rows: list[dict], split: str, key: str) -> list[dict]:
    metric = METRICS[key.split("/")[1]]
    return [r for r in rows if r["split"] == split and all(r.get(c) is not None for c in metric.columns)]


def compare_arms(keys: list[str], arm_rows: dict[str, list[list[dict]]], spec: Spec) -> dict[str, dict]:
    """Per arm: the mean of each metric over seeds and, for variants, its difference from the baseline."""
    boot = spec.evaluate.bootstrap
    out: dict[str, dict] = {}
    for arm, runs in arm_rows.items():
        values, per_seed, deltas = {}, {}, {}
        for key in keys:
            split = key.split("/")[0]
            metric = METRICS[key.split("/")[1]]
            cols = [metric_columns(_kept(rows, split, key), metric) for rows in runs]
            if any(not len(next(iter(c.values()))) for c in cols):
                continue
            per_seed[key] = [metric.aggregate(c) for c in cols]
            values[key] = sum(per_seed[key]) / len(per_seed[key])
            if arm != "baseline":
                base_runs = arm_rows["baseline"]
                base = [metric_columns(_kept(rows, split, key), metric) for rows in base_runs]
                ids = {tuple((r["input"], r["expected"]) for r in _kept(rows, split, key)) for rows in runs + base_runs}
                deltas[key] = difference(metric, base, cols, paired=len(ids) == 1, samples=boot.samples,
                                         confidence=boot.confidence, seed=boot.seed)
        out[arm] = {"values": values, "per_seed": per_seed, "deltas": deltas}
    return out


def run_ablation(spec: Spec, runs_dir: Path, console: Console | None = None, progress=None) -> tuple[dict, Path]:
    """Run every arm × seed (cached), write the results, and refresh the spec's own run and report.

    Returns the results and the spec's run directory.
    """
    from tailor.run import Pipeline

    cfg = spec.evaluate.ablation
    if not cfg.variants:
        raise TailorError("evaluate.ablation.variants: the spec lists no variants to run, e.g. "
                          "[{model.arch.n_layer: 2}, {name: no-dedup, data.clean.dedup: off}]")
    keys = study_metrics(spec)
    console = console or Console(stderr=True)
    project = Path(runs_dir) / spec.name
    plan = [(name, overrides, seed, variant_spec(spec, overrides, seed, f"evaluate.ablation.variants ({name})"))
            for name, overrides in arms(spec) for seed in range(cfg.seeds)]
    homes = [project / "ablations" / f"{_slug(name)}-seed{seed}" for name, _, seed, _ in plan]
    arm_rows: dict[str, list[list[dict]]] = {}
    runs: dict[str, list[str]] = {}
    for (name, _, seed, vspec), home in zip(plan, homes):
        console.print(f"[bold]ablation arm {name}, seed {seed}[/bold]")
        run_dir = Pipeline(vspec, runs_dir, console, project=home, cache_from=(project, *homes)).run(progress=progress)
        arm_rows.setdefault(name, []).append(read_predictions(run_dir))
        runs.setdefault(name, []).append(str(run_dir))
    compared = compare_arms(keys, arm_rows, spec)
    result = {"spec": spec.name, "seeds": cfg.seeds, "metrics": keys, "bootstrap": spec.evaluate.bootstrap.model_dump(),
              "variants": [{"name": name, "overrides": overrides, "runs": runs[name], **compared[name]}
                           for name, overrides in arms(spec)]}
    path = results_path(project, spec)
    atomic_write_json(path, result)
    plot = ablation_plot(result)
    if plot:
        atomic_write_bytes(path.with_suffix(".png"), plot)
    atomic_write_text(path.with_suffix(".html"), document(f"{spec.name} ablation", [ablation_section(result, plot)]))
    run_dir = Pipeline(spec, runs_dir, console, cache_from=tuple(homes)).run(progress=progress)
    return result, run_dir
