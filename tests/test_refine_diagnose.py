"""Each diagnosis rule fires on a run built to show its symptom and not on a healthy one.

Real tiny runs show the training symptoms (too short a run, too high a rate, a budget that cuts the
steps, confusions of an undertrained model); hand-written run folders show the ones that cannot be
trained cheaply and surely (overfitting, a frozen pretrained body, weak slices, imbalance, leaks, drops).
"""

from __future__ import annotations

import copy

import pytest

from refine_runs import HEALTHY, HEALTHY_FILES, SPEC, _curve, merge, spec_file, write_run
from tailor.refine import diagnose as d
from tailor.refine.diagnose import diagnose, load_run, target_gaps
from tailor.refine.levers import propose
from tailor.run import Pipeline
from tailor.spec import Spec, load_spec


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    """name -> RunFiles of real tiny runs: healthy, short (15 steps), hot (lr 0.5), cut (a 1 s budget)."""
    root = tmp_path_factory.mktemp("refine-real")
    overrides = {"healthy": HEALTHY, "short": {},
                 "hot": {"train": {"max_steps": 40, "eval_every": 10, "optimizer": {"lr": 0.5}, "grad_clip": None}},
                 "cut": {"train": {"max_steps": 100000, "max_time": "1s", "eval_every": 1000}}}
    out = {}
    for name, override in overrides.items():
        spec = load_spec(spec_file(root, merge(override, {"name": f"intents-{name}"}), f"{name}.yaml"))
        out[name] = load_run(Pipeline(spec, root / "runs").run())
    return out


@pytest.fixture
def healthy_spec() -> Spec:
    return Spec.model_validate(merge(SPEC, HEALTHY))


def test_a_healthy_real_run_shows_no_symptom(real_runs):
    run = real_runs["healthy"]
    assert run.metrics["test/accuracy"] >= 0.9  # it is healthy: it learnt the task
    assert diagnose(run) == []


def test_a_too_short_real_run_is_still_improving_underfit_and_confused(real_runs):
    found = {f.rule: f for f in diagnose(real_runs["short"])}
    assert {"still_improving", "underfitting", "confused_pair"} <= set(found)
    assert found["still_improving"].evidence["stopped_by"] == "max_steps"
    gap = target_gaps(real_runs["short"])[0]
    assert not gap["met"] and gap["gap"] == pytest.approx(0.9 - gap["value"]) and gap["interval"]
    levers = [p.lever.name for p in propose(real_runs["short"].spec, real_runs["short"], list(found.values()))]
    assert set(levers[:2]) == {"higher-lr", "longer-training"}  # the two that answer both curve findings
    assert found["target_unmet"].evidence["targets"][0]["metric"] == "test/accuracy"


def test_a_real_run_at_a_far_too_high_rate_is_unstable(real_runs):
    assert [f.rule for f in diagnose(real_runs["hot"]) if f.rule == "unstable"] == ["unstable"]
    assert d.unstable(real_runs["healthy"]) is None


def test_a_real_run_cut_by_its_budget_says_so(real_runs):
    found = d.budget_cut(real_runs["cut"])
    assert found is not None and found.evidence["steps"] < found.evidence["planned_steps"] == 100000
    assert d.budget_cut(real_runs["healthy"]) is None


def test_budget_cut_fires_when_the_plan_filled_a_small_budget(tmp_path, healthy_spec):
    summary = HEALTHY_FILES["summary"] | {"plan": "4 steps of batch 16 fill 90% of the 13s budget at 230 tokens/s"}
    assert d.budget_cut(_run(tmp_path, healthy_spec, summary=summary)).evidence["plan"].startswith("4 steps")
    assert d.budget_cut(_run(tmp_path, healthy_spec, summary=HEALTHY_FILES["summary"] | {"plan": "from the spec"})) \
        is None


def _run(tmp_path, spec, **files):
    return load_run(write_run(tmp_path / "run", spec, **files))


def test_the_hand_written_healthy_run_shows_no_symptom(tmp_path, healthy_spec):
    assert diagnose(_run(tmp_path, healthy_spec)) == []


def test_target_unmet_fires_on_a_miss_or_an_interval_across_the_bound(tmp_path, healthy_spec):
    def results(value, low, high):
        return {"metrics": {"test/accuracy": value}, "intervals": {"test/accuracy": [low, high]}}

    assert d.target_unmet(_run(tmp_path, healthy_spec, results=results(0.8, 0.7, 0.88))).evidence["targets"][0]["gap"] \
        == pytest.approx(0.1)
    assert d.target_unmet(_run(tmp_path, healthy_spec, results=results(0.92, 0.85, 0.97))) is not None
    assert d.target_unmet(_run(tmp_path, healthy_spec, results=results(0.96, 0.92, 0.99))) is None


def test_overfitting_fires_when_validation_rises_as_train_falls(tmp_path, healthy_spec):
    curve = _curve([1.4 * 0.9 ** i + 0.01 for i in range(40)], [(10, 0.6), (20, 0.4), (30, 0.5), (40, 0.7)])
    found = d.overfitting(_run(tmp_path, healthy_spec, curve=curve))
    assert found is not None and found.evidence["best_step"] == 20
    assert d.overfitting(_run(tmp_path, healthy_spec)) is None


def test_frozen_body_fires_on_the_head_only_road(tmp_path, healthy_spec):
    frozen = Spec.model_validate(merge(SPEC, {"model": {"base": "minilm-l6", "arch": {},
                                                         "adapt": {"freeze": {"bottom_layers": "all"}}},
                                              "tokenizer": {"type": "pretrained"}}))
    found = d.frozen_body(_run(tmp_path, frozen))
    assert found is not None and found.evidence["road"] == "head only"
    assert d.frozen_body(_run(tmp_path, healthy_spec)) is None
    assert "unfreeze" in [p.lever.name for p in propose(frozen, _run(tmp_path, frozen), [found])]


def test_confused_pair_fires_when_one_pair_holds_the_errors(tmp_path, healthy_spec):
    errors = copy.deepcopy(HEALTHY_FILES["errors"]) | {"errors": 10, "confused": [
        {"expected": "billing", "predicted": "refund", "count": 6}, {"expected": "login", "predicted": "refund",
                                                                    "count": 4}]}
    found = d.confused_pair(_run(tmp_path, healthy_spec, errors=errors))
    assert found is not None and found.evidence["labels"] == ["billing", "login", "refund"]
    proposals = {p.lever.name: p for p in propose(healthy_spec, _run(tmp_path, healthy_spec), [found])}
    assert proposals["class-weights"].changes == {"train.loss.class_weights": {"billing": 2.0, "login": 2.0,
                                                                               "refund": 2.0}}


def test_weak_slice_fires_on_a_much_worse_metadata_value(tmp_path, healthy_spec):
    errors = copy.deepcopy(HEALTHY_FILES["errors"])
    errors["slices"]["channel"][0]["exact_match"] = 0.5
    found = d.weak_slice(_run(tmp_path, healthy_spec, errors=errors))
    assert found is not None and (found.evidence["field"], found.evidence["value"]) == ("channel", "chat")
    # advice only: more data for that slice is not something refine can make
    assert [p.changes for p in propose(healthy_spec, _run(tmp_path, healthy_spec), [found])] == [None]


def test_data_report_rules_fire_on_imbalance_leaks_and_drops(tmp_path, healthy_spec):
    data = copy.deepcopy(HEALTHY_FILES["data"])
    data["labels"]["splits"]["train"]["refund"] = 10
    data["duplicates"]["cross_split_pairs"] = 7
    data |= {"loaded": 240, "dropped": 60, "steps": [{"step": "quality", "dropped": {"too short": 60}}]}
    run = _run(tmp_path, healthy_spec, data=data)
    assert d.class_imbalance(run).evidence["rare"] == ["refund"]
    assert d.near_duplicates(run).evidence["cross_split_pairs"] == 7
    assert d.many_dropped(run).evidence["reasons"] == {"quality: too short": 60}
    healthy = _run(tmp_path, healthy_spec)
    assert d.class_imbalance(healthy) is d.near_duplicates(healthy) is d.many_dropped(healthy) is None


def test_a_folder_without_an_evaluation_is_refused_with_its_path(tmp_path, healthy_spec):
    folder = write_run(tmp_path / "run", healthy_spec)
    (folder / "evaluate" / "results.json").unlink()
    with pytest.raises(Exception, match="evaluate/results.json"):
        load_run(folder)


def test_the_leak_levers_set_keys_that_make_a_valid_spec(tmp_path, healthy_spec):
    from tailor.refine.loop import with_changes

    data = copy.deepcopy(HEALTHY_FILES["data"])
    data["duplicates"]["cross_split_pairs"] = 7
    spec = Spec.model_validate(merge(SPEC, {"data": {"split": {"group": None}}}))
    run = _run(tmp_path, spec, data=data)
    proposals = {p.lever.name: p for p in propose(spec, run, [d.near_duplicates(run)])}
    cleaned = with_changes(spec, proposals["near-dedup"].changes, "test")
    assert [list(step) for step in cleaned.data.clean] == [["normalize"], ["dedup"], ["near_dedup"]]
    assert with_changes(spec, proposals["group-duplicates"].changes, "test").data.split.group == "near_duplicates"
