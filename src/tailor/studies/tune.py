"""Hyperparameter search with optuna: any spec key as a dimension, pruning fed by the validation metric.

Each trial is an ordinary run of the spec with the trial's values filled in (so its data and
tokenizer stages are reused by content hash). Trials live in optuna storage: SQLite in the runs
folder by default, or a PostgreSQL URL that several machines share; `parallel: N` runs N
worker processes against the same storage. The spec's own values are tried first, so the search
never reports something worse than what it started from. Output in `<runs>/<name>/tune/`:
trials.json, trials.png, report.html and best.yaml (the best spec, for `tailor run`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pydantic import ValidationError

from tailor.artifacts import atomic_write_json, atomic_write_text, private_file
from tailor.errors import TailorError
from tailor.spec import Spec, dump_spec, open_tree
from tailor.spec.metrics import loop_keys
from tailor.spec.train import Tune

def _get(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(part)
        node = node[part]
    return node


def with_values(spec: Spec, values: dict) -> Spec:
    """A copy of spec with dotted keys set (e.g. 'train.optimizer.lr'); bad keys or values name the key."""
    full = spec.model_dump(mode="json")
    # a trial that changes the road (model.adapt.lora, say) gets that road's defaults for what it leaves out
    tree = open_tree(spec, keep=tuple(values))
    for key, value in values.items():
        parts = key.split(".")
        try:
            parent = _get(full, ".".join(parts[:-1])) if len(parts) > 1 else full
        except KeyError:
            raise TailorError(f"tune.space.{key}: the spec has no key {key!r}") from None
        if not isinstance(parent, dict) or parts[-1] not in parent:
            raise TailorError(f"tune.space.{key}: the spec has no key {key!r}")
        (_get(tree, ".".join(parts[:-1])) if len(parts) > 1 else tree)[parts[-1]] = value
    try:
        return Spec.model_validate(tree)
    except ValidationError as e:
        first = e.errors()[0]
        raise TailorError(f"tune.space: {'.'.join(map(str, first['loc']))}: {first['msg']} (values {values})") from None


def dimension(key: str, values: list, method: str):
    """(kind, args) of one search dimension: ('float'|'int', low, high, log) or ('choice', options)."""
    if not isinstance(values, list) or not values:
        raise TailorError(f"tune.space.{key}: expected [low, high], [low, high, log] or a list of choices")
    words = [v for v in values if isinstance(v, str) and v in ("log", "choices")]
    plain = [v for v in values if not (isinstance(v, str) and v in ("log", "choices"))]
    numeric = len(plain) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in plain)
    if method == "grid" or "choices" in words or not numeric:
        if "log" in words:
            raise TailorError(f"tune.space.{key}: 'log' needs a numeric range [low, high, log]"
                              + (" (grid search takes lists of values)" if method == "grid" else ""))
        return ("choice", plain)
    low, high = plain
    if low >= high:
        raise TailorError(f"tune.space.{key}: low ({low}) must be below high ({high})")
    kind = "int" if all(isinstance(v, int) for v in plain) else "float"
    return (kind, low, high, "log" in words)


def suggest(trial, key: str, dim: tuple):
    if dim[0] == "choice":
        return trial.suggest_categorical(key, dim[1])
    kind, low, high, log = dim
    if kind == "int":
        return trial.suggest_int(key, low, high, log=log)
    return trial.suggest_float(key, low, high, log=log)


def storage_url(cfg: Tune, runs_dir: Path, name: str) -> str:
    if cfg.storage:
        return cfg.storage
    path = private_file((Path(runs_dir) / name).resolve() / "tune.db")  # trial settings and scores: owner only
    return f"sqlite:///{path}"


def make_study(spec: Spec, runs_dir: Path):
    """Create or load the study the spec's tune section describes."""
    import optuna

    cfg: Tune = spec.tune
    dims = {k: dimension(k, v, cfg.method) for k, v in cfg.space.items()}
    if cfg.method == "grid":
        sampler = optuna.samplers.GridSampler({k: d[1] for k, d in dims.items()}, seed=cfg.seed)
    elif cfg.method == "random":
        sampler = optuna.samplers.RandomSampler(seed=cfg.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=cfg.seed)
    train = spec.train
    if cfg.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    elif cfg.pruner == "hyperband":
        every = train.eval_interval(train.max_steps) if train.max_steps != "auto" else train.eval_interval(1000)
        max_steps = train.max_steps if train.max_steps != "auto" else 10 * every
        pruner = optuna.pruners.HyperbandPruner(min_resource=every, max_resource=max_steps)
    else:
        pruner = optuna.pruners.NopPruner()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(study_name=cfg.study or spec.name, storage=storage_url(cfg, runs_dir, spec.name),
                                    sampler=sampler, pruner=pruner, direction=cfg.goal, load_if_exists=True)
    except Exception as e:  # a storage URL that does not answer: say which
        raise TailorError(f"tune.storage: cannot open {cfg.storage or 'the SQLite study'}: {e}") from None
    if not study.trials and cfg.method != "grid":
        base = spec.model_dump(mode="json")
        start = {}
        for key, dim in dims.items():
            value = _get(base, key)
            inside = value in dim[1] if dim[0] == "choice" else dim[1] <= value <= dim[2]
            if inside:
                start[key] = value
        if len(start) == len(dims):
            study.enqueue_trial(start)  # the spec's own values first
    return study, dims


def objective_for(spec: Spec, runs_dir: Path, dims: dict, console):
    """The optuna objective: one run of the spec with the trial's values; pruned from validation passes."""
    import optuna

    from tailor.run import Pipeline
    from tailor.train.loop import VALIDATION_HOOK

    cfg: Tune = spec.tune
    in_loop = cfg.metric in loop_keys()
    metric = cfg.metric.split("/", 1)[1]

    def objective(trial) -> float:
        values = {key: suggest(trial, key, dim) for key, dim in dims.items()}
        trial_spec = with_values(spec, values)
        console.print(f"[bold]trial {trial.number}[/bold] {values}")

        def report(step: int, result: dict) -> None:
            trial.report(result[metric], step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}: {cfg.metric} {result[metric]:.4g}")

        token = VALIDATION_HOOK.set(report if in_loop else None)
        try:
            run_dir = Pipeline(trial_spec, runs_dir, console).run(until="train" if in_loop else "evaluate")
        finally:
            VALIDATION_HOOK.reset(token)
        trial.set_user_attr("run_dir", str(run_dir))
        if in_loop:
            rows = [json.loads(x) for x in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
            seen = [r[metric] for r in rows if r["split"] == "validation" and metric in r]
            return max(seen) if cfg.goal == "maximize" else min(seen)
        metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
        if cfg.metric not in metrics:
            raise TailorError(f"tune.metric: {cfg.metric!r} was not measured; measured: {', '.join(sorted(metrics))}")
        return metrics[cfg.metric]

    return objective


def run_tune(spec: Spec, spec_path: Path, runs_dir: Path, console, worker: bool = False) -> dict:
    """Run the study until it has tune.trials finished trials; write the trials table, plot and best spec."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    if spec.tune is None:
        raise TailorError(f"{spec_path}: no tune: section; add one, e.g. tune: {{method: bayesian, trials: 10, "
                          "space: {train.optimizer.lr: [1.0e-4, 1.0e-2, log]}}")
    if not spec.tune.space:
        raise TailorError("tune.space: name at least one spec key to search, e.g. train.optimizer.lr: [1.0e-4, 1.0e-2, log]")
    cfg = spec.tune
    study, dims = make_study(spec, runs_dir)
    helpers = []
    if not worker and cfg.parallel > 1:  # more processes on the same storage
        cmd = [sys.executable, "-m", "tailor.cli", "tune", str(spec_path), "--runs-dir", str(runs_dir), "--worker",
               "--trials", str(cfg.trials), "--storage", storage_url(cfg, runs_dir, spec.name)]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        helpers = [subprocess.Popen(cmd, env=env) for _ in range(cfg.parallel - 1)]
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    study.optimize(objective_for(spec, runs_dir, dims, console), n_trials=cfg.trials,
                   callbacks=[MaxTrialsCallback(cfg.trials, states=done)], catch=(TailorError,))
    failed = [h for h in helpers if h.wait() != 0]
    if failed:
        raise TailorError(f"{len(failed)} tuning worker process(es) failed")
    if worker:
        return {}
    return write_results(spec, study, Path(runs_dir) / spec.name / "tune", optuna)


def write_results(spec: Spec, study, out: Path, optuna) -> dict:
    """trials.json, trials.png, report.html and best.yaml in out; returns the best trial's summary."""
    from optuna.trial import TrialState

    trials = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
               "last_step": max(t.intermediate_values) if t.intermediate_values else None,
               "run": t.user_attrs.get("run_dir")} for t in study.trials]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise TailorError("tune: no trial finished; see the errors above")
    best = study.best_trial
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "trials.json", {"metric": spec.tune.metric, "direction": spec.tune.goal,
                                            "best": best.number, "trials": trials})
    best_spec = with_values(spec, best.params)
    atomic_write_text(out / "best.yaml", f"# best of {len(trials)} trials: {spec.tune.metric} = {best.value:.6g}\n"
                      + dump_spec(best_spec))
    png = trials_plot(study, spec.tune.metric)
    (out / "trials.png").write_bytes(png)
    atomic_write_text(out / "report.html", trials_html(spec, trials, best.number, png))
    return {"best_trial": best.number, "best_value": best.value, "best_params": best.params,
            "trials": len(trials), "pruned": sum(t["state"] == "pruned" for t in trials), "folder": str(out)}


def trials_plot(study, metric: str) -> bytes:
    """PNG: each trial's validation curve (pruned ones dashed) and the final values by trial."""
    from optuna.trial import TrialState

    from tailor.page import png, pyplot

    fig, (curves, finals) = pyplot().subplots(1, 2, figsize=(10, 3.5), dpi=110)
    for t in study.trials:
        if t.intermediate_values:
            steps = sorted(t.intermediate_values)
            style = "x--" if t.state == TrialState.PRUNED else "o-"  # markers: a trial pruned at once is one point
            curves.plot(steps, [t.intermediate_values[s] for s in steps], style, label=f"trial {t.number}")
    curves.set_xlabel("step")
    curves.set_ylabel(metric)
    curves.set_title("validation during training (x, dashed: pruned)")
    curves.grid(alpha=0.3)
    if len(study.trials) <= 12:
        curves.legend(fontsize=7)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    finals.plot([t.number for t in done], [t.value for t in done], "o")
    finals.set_xlabel("trial")
    finals.set_ylabel(metric)
    finals.set_title("finished trials")
    finals.grid(alpha=0.3)
    return png(fig)


def trials_html(spec: Spec, trials: list[dict], best: int, plot: bytes) -> str:
    """A self-contained page: the trials table (the best trial first in bold) and the plot."""
    from tailor.page import document, esc, img, table

    keys = list(spec.tune.space)
    rows = [[f"{t['number']} (best)" if t["number"] == best else t["number"], t["state"], t["value"],
             *[t["params"].get(k) for k in keys], t["last_step"]] for t in trials]
    return document(f"{spec.name} tuning", [
        f"<h1>{esc(spec.name)}: tuning</h1><p>{len(trials)} trials, {spec.tune.method} search, "
        f"{spec.tune.pruner} pruning; best: trial {best}. The best spec is best.yaml beside this page.</p>",
        table(["trial", "state", spec.tune.metric, *keys, "last step"], rows), img(plot, "trials")])
