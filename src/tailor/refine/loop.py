"""The refine loop: diagnose, try the levers the evidence suggests as ordinary cached runs, keep what helps.

Every trial is the spec with a lever's keys set, run through the ordinary pipeline in
`<runs>/<name>/refine/trials/<label>/` and evaluated on the validation split only (its targets are
read on validation, the test split is not loaded). A change is kept when the paired bootstrap
interval of its difference from the current spec, on an unmet target's metric, excludes zero in
that metric's better direction and no other judged metric gets significantly worse. Kept changes
of one round are combined; the best of the combination and the single changes becomes the next
round's spec. When a round has more candidate levers than it tries (`per_round`) and a run takes
a minute or more, each is first screened with SCREEN_SHARE of its training (successive halving's
first rung; a lever that changes the training's length is tried in full instead) and the best on
validation go on to full trials. The loop stops when every target is met on validation with its whole interval, when
no lever is left, or when the budget cannot pay for another trial. Then the final spec runs once
as the user's spec would, and that run is the only one that evaluates the test split.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from tailor.errors import TailorError
from tailor.evaluate.compare import compare_runs
from tailor.refine.diagnose import Finding, RunFiles, diagnose, load_run, target_gaps
from tailor.refine.levers import Lever, Proposal, propose
from tailor.refine.report import write_refine
from tailor.report import judge_targets
from tailor.spec import Spec, format_errors, open_tree
from tailor.spec.metrics import higher_is_better
from tailor.studies.ablation import set_key

MAX_ROUNDS = 8
EXPENSIVE = 5.0  # a lever whose trial costs this many runs of the current spec waits for the cheap ones
SCREEN_SHARE = 1 / 3  # successive halving: with more candidates than a round tries, each first trains this share
SCREEN_FROM_S = 60.0  # a run shorter than this is cheaper to try in full than to screen
LENGTH_KEYS = {"train.max_steps", "train.max_time"}  # a lever that changes them cannot be judged on a shortened run


def judging_spec(spec: Spec) -> Spec:
    """The spec as a trial runs it: evaluated on validation only, with its test targets read on validation."""
    tree = open_tree(spec)
    for target in tree["problem"]["targets"]:
        if target["split"] == "test":
            target["split"] = "validation"
    tree["evaluate"]["splits"] = ["validation"]
    tree["evaluate"]["error_analysis"]["split"] = "validation"
    return Spec.model_validate(tree)


def with_changes(spec: Spec, changes: dict[str, Any], where: str) -> Spec:
    """The spec with dotted keys set; the road chooses again what the spec left out (its lever may change it)."""
    tree = open_tree(spec, keep=tuple(changes))
    for dotted, value in changes.items():
        set_key(tree, dotted, value, where)
    try:
        return Spec.model_validate(tree)
    except ValidationError as e:
        raise TailorError(f"{where}: the changed spec is not valid:\n" + format_errors(e, "", where)) from None


def validation_verdict(run: RunFiles) -> list[dict]:
    """Each target judged on validation; met_with_interval when the whole interval is on the right side."""
    targets = judging_spec(run.spec).problem.targets
    out = []
    for judged in judge_targets(targets, run.metrics, run.intervals):
        out.append({**judged, "met_with_interval": judged["met"] and judged["certainty"] != "interval crosses the bound"})
    return out


def _stage_seconds(run_dir: Path, *stages: str) -> float:
    total = 0.0
    for stage in stages:
        marker = run_dir / stage / ".tailor-stage.json"
        if marker.is_file():
            total += float(json.loads(marker.read_text()).get("seconds") or 0.0)
    return total


@dataclass
class Trial:
    """One tried change: what suggested it, what it set, its effect on the judged metrics, and the verdict."""

    round: int
    label: str
    lever: str
    evidence: list[str]
    changes: dict[str, Any]
    run: str | None = None
    effects: list[dict] = field(default_factory=list)
    kept: bool = False
    why: str = ""
    screening: bool = False  # a shortened run of successive halving's first rung, not judged for keeping
    promoted: bool = False   # a screening run whose lever went on to a full trial


def judge(base: Path, other: Path, keys: list[str], boot) -> tuple[bool, list[dict], str]:
    """(kept, effect per judged key, why): kept when one key improves with its interval and none worsens."""
    rows = {r["metric"]: r for r in compare_runs(base, other, boot)}
    effects = [rows[k] for k in keys if k in rows]
    if not effects:
        return False, [], f"none of {', '.join(keys)} was measured"
    better = [r["metric"] for r in effects if r["significant"] and r["better"] == "b"]
    worse = [r["metric"] for r in effects if r["significant"] and r["better"] == "a"]
    if worse:
        return False, effects, f"{', '.join(worse)} got worse (interval excludes 0)"
    if better:
        return True, effects, f"{', '.join(better)} improved (interval excludes 0)"
    return False, effects, "no judged metric changed beyond its interval"


def shortened(spec: Spec, changes: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The changes with training cut to SCREEN_SHARE of what the changed spec would train (its steps, or its
    time budget), for a screening trial; None when the spec sets neither."""
    train = with_changes(spec, changes, where).train
    if isinstance(train.max_steps, int):
        return {**changes, "train.max_steps": max(1, round(train.max_steps * SCREEN_SHARE))}
    seconds = train.max_time or spec.problem.constraints.time_budget
    return {**changes, "train.max_time": max(1.0, seconds * SCREEN_SHARE)} if seconds else None


def _gain(trial: Trial, key: str) -> float:
    """The trial's improvement on key, positive when better in the metric's direction."""
    row = next((e for e in trial.effects if e["metric"] == key), None)
    if row is None:
        return float("-inf")
    return row["delta"] if higher_is_better(key) else -row["delta"]


class Refiner:
    """One `tailor refine`: its trials' homes, the budget clock and the record of every round."""

    def __init__(self, spec: Spec, runs_dir: Path, budget_s: float, console: Console | None = None,
                 per_round: int = 3, progress=None, screen_from: float = SCREEN_FROM_S):
        self.spec, self.runs_dir, self.budget_s, self.screen_from = spec, Path(runs_dir), budget_s, screen_from
        self.console, self.per_round, self.progress = console or Console(stderr=True), per_round, progress
        self.project = self.runs_dir / spec.name
        self.homes: list[Path] = []
        self.trials: list[Trial] = []
        self.start = time.monotonic()

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def run_trial(self, spec: Spec, label: str) -> Path:
        """Run the spec's judging form as an ordinary cached run in its own home; its run folder."""
        from tailor.run import Pipeline

        home = self.project / "refine" / "trials" / label
        if home not in self.homes:
            self.homes.append(home)
        self.console.print(f"[bold]refine trial {label}[/bold]")
        return Pipeline(judging_spec(spec), self.runs_dir, self.console, project=home,
                        cache_from=(self.project, *self.homes)).run(progress=self.progress)

    def _try(self, rnd: int, basis: Spec, basis_run: Path, proposal: Proposal, keys: list[str]) -> tuple[Trial, Spec | None]:
        label = f"r{rnd}-{proposal.lever.name}"
        trial = Trial(rnd, label, proposal.lever.name, [f.summary for f in proposal.findings], proposal.changes or {})
        try:
            spec = with_changes(basis, trial.changes, f"lever {proposal.lever.name}")
            run_dir = self.run_trial(spec, label)
        except TailorError as e:
            trial.why = f"failed: {e}"
            return trial, None
        trial.run = str(run_dir)
        trial.kept, trial.effects, trial.why = judge(basis_run, run_dir, keys, self.spec.evaluate.bootstrap)
        return trial, spec

    def screen(self, rnd: int, basis: Spec, todo: list[Proposal], key: str, per_run: float,
               reserve: float) -> list[Proposal]:
        """Successive halving's first rung: when a round has more candidates than it tries, each trains
        SCREEN_SHARE of its run first; the candidates in order of that rung's validation `key` (best first),
        the ones it could not screen after them in catalogue order. A lever that changes the training's
        length is not screened (a shortened run cannot show what more training does): it goes first."""
        scored: list[tuple[float, int, Proposal]] = []
        length = [p for p in todo if LENGTH_KEYS & set(p.lever.keys)]  # tried in full, ahead of the screened
        screens: list[Trial] = []
        for i, proposal in enumerate(todo):
            if proposal in length:
                continue
            label = f"r{rnd}-screen-{proposal.lever.name}"
            where = f"lever {proposal.lever.name}"
            trial = Trial(rnd, label, proposal.lever.name, [f.summary for f in proposal.findings],
                          proposal.changes or {}, screening=True)
            self.trials.append(trial)
            screens.append(trial)
            cost = per_run * proposal.lever.cost * SCREEN_SHARE
            if cost + reserve > self.left():
                trial.why = f"screening skipped: about {cost:.0f}s, {max(0.0, self.left()):.0f}s of budget left"
                continue
            try:
                short = shortened(basis, trial.changes, where)
                if short is None:
                    trial.why = "not screened: the spec sets neither max_steps nor a time budget to shorten"
                    continue
                run_dir = self.run_trial(with_changes(basis, short, where), label)
            except TailorError as e:
                trial.why = f"screening failed: {e}"
                continue
            trial.run, trial.changes = str(run_dir), short
            value = load_run(run_dir).metrics.get(key)
            if value is None:
                trial.why = f"screening: {key} was not measured"
                continue
            scored.append((value if higher_is_better(key) else -value, -i, proposal))
            trial.why = f"screening at {SCREEN_SHARE:.0%} of the training: {key} {value:.4g}"
        ranked = length + [p for *_, p in sorted(scored, key=lambda t: t[:2], reverse=True)]
        promoted = {p.lever.name for p in ranked[: self.per_round]}
        for trial in (t for t in screens if t.run):
            trial.promoted = trial.lever in promoted
            trial.why += "; promoted to a full trial" if trial.promoted else "; not promoted"
        return ranked + [p for p in todo if p not in ranked]

    def _combine(self, rnd: int, basis: Spec, basis_run: Path, kept: list[tuple[Trial, Spec]], keys: list[str],
                 primary: str) -> tuple[Trial, Spec]:
        """The best of the kept changes, or all of them together when that beats the best alone."""
        best = max(kept, key=lambda ts: _gain(ts[0], primary))
        if len(kept) < 2:
            return best
        merged: dict[str, Any] = {}
        for t, _ in sorted(kept, key=lambda ts: _gain(ts[0], primary)):  # on a shared key the best trial's value wins
            merged |= t.changes
        names = " + ".join(t.lever for t, _ in kept)
        lever = Lever("combined", (), tuple(merged), f"the changes kept in round {rnd} together: {names}")
        trial, spec = self._try(rnd, basis, basis_run, Proposal(lever, (), merged), keys)
        trial.lever, trial.evidence = f"combined: {names}", [f"each kept in round {rnd}"]
        self.trials.append(trial)
        if spec is not None and trial.kept and _gain(trial, primary) > _gain(best[0], primary):
            return trial, spec
        return best

    def round(self, rnd: int, basis: Spec, basis_run: Path, tried: set[str]) -> tuple[str, tuple[Trial, Spec] | None,
                                                                                      list[Proposal], list[Finding]]:
        """One round of trials on the basis: (stop reason or '', the new basis or None, proposals, findings)."""
        files = load_run(basis_run)
        verdict = validation_verdict(files)
        if all(v["met_with_interval"] for v in verdict):
            return "met", None, [], diagnose(files)
        findings = diagnose(files)
        proposals = propose(basis, files, findings)
        todo = [p for p in proposals if p.changes and p.lever.name not in tried]
        cheap = [p for p in todo if p.lever.cost < EXPENSIVE]
        todo = cheap or todo  # a new road or a much longer run only once the cheap levers of this spec are tried
        if not todo:
            return "no lever left to try", None, proposals, findings
        keys = [v["metric"] for v in verdict if not v["met_with_interval"]]
        per_run = _stage_seconds(basis_run, "train", "evaluate") + 1.0
        reserve = 2 * _stage_seconds(basis_run, "evaluate") + 5.0  # the final run evaluates test as well
        kept: list[tuple[Trial, Spec]] = []
        if len(todo) > self.per_round and per_run >= self.screen_from:
            todo = self.screen(rnd, basis, todo, keys[0], per_run, reserve)
            tried.update(p.lever.name for p in todo[self.per_round:])  # screened out: not again on this basis
        for proposal in todo[: self.per_round]:
            tried.add(proposal.lever.name)
            if per_run * proposal.lever.cost + reserve > self.left():
                self.trials.append(Trial(rnd, f"r{rnd}-{proposal.lever.name}", proposal.lever.name,
                                         [f.summary for f in proposal.findings], proposal.changes or {},
                                         why=f"skipped: about {per_run * proposal.lever.cost:.0f}s, "
                                             f"{max(0.0, self.left()):.0f}s of budget left"))
                continue
            trial, spec = self._try(rnd, basis, basis_run, proposal, keys)
            self.trials.append(trial)
            if trial.kept and spec is not None:
                kept.append((trial, spec))
        if kept:
            chosen = self._combine(rnd, basis, basis_run, kept, keys, keys[0])
            chosen[0].why += f"; the best on {keys[0]}: round {rnd + 1} starts from it"
            return "", chosen, proposals, findings
        if any(t.why.startswith("skipped") for t in self.trials if t.round == rnd):
            return "budget spent", None, proposals, findings
        return "", None, proposals, findings


def latest_finished(project: Path) -> Path | None:
    """The newest complete run of a spec's project folder, or None."""
    from tailor.run import _runs_of, read_run

    done = [r for r in _runs_of(project) if read_run(r).get("status") == "complete"]
    return done[-1] if done else None


def refine(spec: Spec, runs_dir: Path, budget_s: float, from_run: Path | None = None, console: Console | None = None,
           per_round: int = 3, progress=None, screen_from: float = SCREEN_FROM_S) -> dict:
    """Diagnose, try, keep and combine within the budget, then run the final spec once (test included).

    screen_from: the seconds a run of the current spec must take (train and evaluate) for a round with
    more candidates than per_round to screen them on shortened runs first."""
    from tailor.run import Pipeline

    r = Refiner(spec, runs_dir, budget_s, console, per_round, progress, screen_from)
    source = Path(from_run) if from_run else latest_finished(r.project)
    start = load_run(source) if source else None
    basis, basis_run = spec, r.run_trial(spec, "r0-start")
    if not any(k.startswith("validation/") for k in load_run(basis_run).metrics):
        raise TailorError(f"{spec.name}: the validation split is empty; refine judges changes on validation "
                          "(set data.split.validation above 0)")
    rounds: list[dict] = []
    stop, tried = "", set()
    for rnd in range(1, MAX_ROUNDS + 1):
        stop, new, proposals, findings = r.round(rnd, basis, basis_run, tried)
        rounds.append({"round": rnd, "basis": str(basis_run), "findings": [f.__dict__ for f in findings],
                       "proposals": [{"lever": p.lever.name, "why": p.lever.why, "changes": p.changes,
                                      "findings": [f.rule for f in p.findings]} for p in proposals]})
        if stop:
            break
        if new is not None:
            basis, basis_run, tried = new[1], Path(new[0].run), set()
    else:
        stop = f"{MAX_ROUNDS} rounds"
    result = {"spec": spec.name, "budget_s": budget_s, "seconds": 0.0, "stopped": stop,
              "start": {"run": str(source) if source else None, "targets": target_gaps(start) if start else None},
              "rounds": rounds, "trials": [t.__dict__ for t in r.trials],
              "validation": validation_verdict(load_run(basis_run)), "final_run": None, "test": None, "met": False,
              "original": spec, "refined": basis}
    folder = r.project / "refine"
    result["seconds"] = round(time.monotonic() - r.start, 1)
    write_refine(result, folder)  # section.html first, so that the final run's report includes the rounds
    r.console.print("[bold]refine: the final spec, evaluated once on test[/bold]")
    final_run = Pipeline(basis, runs_dir, r.console, cache_from=tuple(r.homes)).run(progress=progress)
    test = target_gaps(load_run(final_run))
    result |= {"final_run": str(final_run), "test": test, "met": all(t["met"] for t in test),
               "seconds": round(time.monotonic() - r.start, 1)}
    result["paths"] = {k: str(v) for k, v in write_refine(result, folder).items()}
    return result
