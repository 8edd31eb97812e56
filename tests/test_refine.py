"""`tailor refine` end to end on tiny real runs: trials judged on validation, the test split evaluated once."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tailor.evaluate as evaluate_stage
from refine_runs import SPEC, merge, spec_file
from tailor.cli import app
from tailor.refine.loop import judging_spec, refine
from tailor.run import Pipeline
from tailor.spec import Spec, load_spec


@pytest.fixture
def evaluated(monkeypatch) -> collections.Counter:
    """How many times the evaluate stage scores each split (every run's evaluation goes through split_rows)."""
    counts: collections.Counter = collections.Counter()
    real = evaluate_stage.split_rows

    def counting(gen, how, split, *args, **kwargs):
        counts[split] += 1
        return real(gen, how, split, *args, **kwargs)

    monkeypatch.setattr(evaluate_stage, "split_rows", counting)
    return counts


def test_the_judging_spec_reads_targets_on_validation_and_loads_no_test():
    spec = Spec.model_validate(merge(SPEC, {"evaluate": {"error_analysis": {"split": "test"}}}))
    judged = judging_spec(spec)
    assert [t.key for t in judged.problem.targets] == ["validation/accuracy"]
    assert judged.evaluate.splits == ["validation"] and judged.evaluate.error_analysis.split == "validation"
    assert judged.train == spec.train and judged.model == spec.model  # so trials share the spec's trained stages


def test_refine_meets_the_target_of_a_too_short_run_and_evaluates_test_once(tmp_path, evaluated):
    spec = load_spec(spec_file(tmp_path))
    first = Pipeline(spec, tmp_path / "runs").run()
    assert json.loads((first / "report" / "targets.json").read_text())[0]["met"] is False
    evaluated.clear()
    result = refine(spec, tmp_path / "runs", budget_s=600)
    assert evaluated["test"] == 1  # the final run only
    trials = [t for t in result["trials"] if t["run"]]
    assert evaluated["validation"] == len(trials) + 2  # each trial, the starting spec's judging run, the final run
    for t in trials:  # no trial even measured test
        metrics = json.loads((Path(t["run"]) / "evaluate" / "metrics.json").read_text())
        assert metrics and not [k for k in metrics if k.startswith("test/")]
    assert result["met"] and result["stopped"] == "met"
    assert result["start"]["targets"][0]["met"] is False and result["start"]["run"] == str(first)
    kept = [t for t in result["trials"] if t["kept"]]
    assert kept and all(e["interval"][0] > 0 for t in kept for e in t["effects"])  # accuracy: higher is better
    folder = tmp_path / "runs" / "intents" / "refine"
    refined = load_spec(folder / "refined.yaml")
    assert refined.train.max_steps != spec.train.max_steps or refined.train.optimizer.lr != spec.train.optimizer.lr
    diff = (folder / "refined.diff").read_text()
    assert diff.startswith("--- original") and "max_steps" in diff + "lr:" and "+" in diff
    page = (folder / "report.html").read_text()
    assert "kept" in page and "evaluated once" in page and "Round 1" in page
    final = Path(result["final_run"])
    assert "Refinement" in (final / "report.html").read_text()  # the spec's own report has the rounds
    assert json.loads((final / "report" / "targets.json").read_text())[0]["met"] is True


def test_refine_says_not_met_when_nothing_predicts_the_labels(tmp_path, evaluated):
    spec = load_spec(spec_file(tmp_path, shuffled=True))
    result = refine(spec, tmp_path / "runs", budget_s=60, per_round=2)
    assert not result["met"] and evaluated["test"] == 1
    assert not any(t["kept"] for t in result["trials"])  # chance-level labels: no change beats its interval
    page = (tmp_path / "runs" / "intents" / "refine" / "report.html").read_text()
    assert "targets not met on test" in page and "what the evidence suggests with more budget" in page
    assert "No change was kept" in page
    assert load_spec(tmp_path / "runs" / "intents" / "refine" / "refined.yaml").train == spec.train


def test_a_budget_too_small_for_any_trial_skips_them_and_still_confirms_once(tmp_path, evaluated):
    spec = load_spec(spec_file(tmp_path))
    older = Pipeline(spec, tmp_path / "older").run()  # --from: a run outside this runs folder
    evaluated.clear()
    result = refine(spec, tmp_path / "runs", budget_s=1, from_run=older)
    assert result["start"]["run"] == str(older) and not result["start"]["targets"][0]["met"]
    assert result["stopped"] == "budget spent" and evaluated["test"] == 1
    assert result["trials"] and all(t["why"].startswith("skipped") and t["run"] is None for t in result["trials"])


def test_the_cli_refuses_a_bad_budget_and_a_spec_without_targets(tmp_path):
    path = spec_file(tmp_path)
    bad = CliRunner().invoke(app, ["refine", str(path), "--budget", "soon", "--runs-dir", str(tmp_path / "runs")])
    assert bad.exit_code != 0 and "--budget" in str(bad.exception)
    none = spec_file(tmp_path, merge(SPEC, {"problem": {"targets": []}}), "none.yaml")
    out = CliRunner().invoke(app, ["refine", str(none), "--runs-dir", str(tmp_path / "runs")])
    assert out.exit_code != 0 and "problem.targets is empty" in str(out.exception)


def test_the_example_data_is_what_its_generator_writes_and_its_specs_parse():
    from refine_runs import ROOT, _generator

    folder = ROOT / "examples" / "refine-intents"
    gen = _generator()
    for name, shuffled in (("tickets.jsonl", False), ("shuffled.jsonl", True)):
        rows = [json.loads(line) for line in (folder / "data" / name).read_text().splitlines()]
        assert rows == gen.tickets(shuffled=shuffled)
    for spec in sorted(folder.glob("spec-*.yaml")):
        assert load_spec(spec).problem.targets[0].key == "test/accuracy"


def _scored_run(folder: Path, nll: list[float]) -> Path:
    """A run folder with validation loss rows only (what compare_runs reads): one token per example."""
    from tailor.evaluate.predictions import write_predictions

    (folder / "evaluate").mkdir(parents=True)
    rows = [{"split": "validation", "index": i, "input": f"q{i}", "expected": "a", "nll": v, "tokens": 1}
            for i, v in enumerate(nll)]
    write_predictions(folder / "evaluate" / "predictions.parquet", rows)
    loss = sum(nll) / len(nll)
    (folder / "evaluate" / "results.json").write_text(json.dumps({"metrics": {"validation/loss": loss}}))
    return folder


def test_a_change_is_kept_in_the_metric_s_own_direction(tmp_path):
    """Loss is lower-is-better in the metric table: a lower loss is kept, a higher one is dropped as worse."""
    from tailor.refine.loop import judge
    from tailor.spec.evaluate import Bootstrap

    base = _scored_run(tmp_path / "base", [1.0 + 0.01 * i for i in range(40)])
    better = _scored_run(tmp_path / "better", [0.5 + 0.01 * i for i in range(40)])
    kept, effects, why = judge(base, better, ["validation/loss"], Bootstrap(samples=200))
    assert kept and effects[0]["interval"][1] < 0 and "improved" in why
    kept, _, why = judge(better, base, ["validation/loss"], Bootstrap(samples=200))
    assert not kept and "got worse" in why


def test_more_candidates_than_a_round_tries_are_screened_short_and_the_best_promoted(tmp_path, evaluated):
    spec = load_spec(spec_file(tmp_path))
    result = refine(spec, tmp_path / "runs", budget_s=600, per_round=2, screen_from=0.0)
    first = [t for t in result["trials"] if t["round"] == 1]
    screened = [t for t in first if t["screening"] and t["run"]]
    assert len(screened) >= 2, [t["why"] for t in first]
    for t in screened:  # a third of the steps, judged on validation only
        assert t["changes"]["train.max_steps"] == 5 and "screening at 33%" in t["why"]
        assert not [k for k in json.loads((Path(t["run"]) / "evaluate" / "metrics.json").read_text())
                    if k.startswith("test/")]
    assert "longer-training" not in {t["lever"] for t in screened}  # its effect is the length: tried in full
    value = {t["lever"]: float(t["why"].split("validation/accuracy ")[1].split(";")[0]) for t in screened}
    promoted = [t["lever"] for t in screened if t["promoted"]]
    assert promoted == [max(value, key=value.get)]
    full = [t["lever"] for t in first if not t["screening"] and t["run"]]
    assert full[:2] == ["longer-training", *promoted]  # only these ran in full
    assert evaluated["test"] == 1
    page = (tmp_path / "runs" / "intents" / "refine" / "report.html").read_text()
    assert "'met'>promoted</td>" in page and ">screened</td>" in page


def test_a_round_of_short_runs_tries_its_levers_in_full_without_screening(tmp_path):
    spec = load_spec(spec_file(tmp_path))
    result = refine(spec, tmp_path / "runs", budget_s=600, per_round=1)  # runs of a few seconds
    assert not [t for t in result["trials"] if t["screening"]]
