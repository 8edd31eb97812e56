"""One metric table: every consumer of a metric's direction agrees with it, for every metric."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conftest import BASE_SPEC, merge
from tailor.evaluate.compare import winner
from tailor.evaluate.predictions import METRICS
from tailor.evaluate.sections import ablation_section
from tailor.report import judge_targets
from tailor.spec import Spec
from tailor.spec.deploy import Alert
from tailor.spec.metrics import TABLE, for_output, loop_keys
from tailor.spec.problem import Target
from tailor.spec.train import EarlyStopping, Train, Tune
from tailor.train.loop import improved

EVALUATED = [name for name, m in TABLE.items() if not {"serving", "preference"} & set(m.outputs)]
SERVED = [name for name, m in TABLE.items() if "serving" in m.outputs]
TRAINED = [name for name, m in TABLE.items() if "preference" in m.outputs]  # a dpo/orpo validation pass's rewards


def test_every_evaluated_metric_has_a_formula_and_every_formula_a_table_entry():
    assert set(METRICS) == set(EVALUATED)
    for name in EVALUATED:
        assert METRICS[name].columns == TABLE[name].columns
        assert METRICS[name].generated == TABLE[name].generated


@pytest.mark.parametrize("name", EVALUATED)
def test_tune_early_stopping_compare_report_retrain_and_ablation_agree(name):
    higher = TABLE[name].higher_is_better
    key = f"validation/{name}"
    better, worse = (2.0, 1.0) if higher else (1.0, 2.0)
    # tune: optuna's direction
    assert Tune(metric=key).goal == ("maximize" if higher else "minimize")
    # early stopping (for the metrics training measures at every validation pass)
    if key in loop_keys():
        train = Train(early_stopping=EarlyStopping(metric=key))
        assert improved(better, worse, train) and not improved(worse, better, train)
    # compare: which run is better when b - a = +1
    assert winner(key, +1.0) == ("b" if higher else "a")
    # the report's verdict on a target bounded the table's way
    target = Target(metric=name, split="validation", **({"at_least": 1.5} if higher else {"at_most": 1.5}))
    verdicts = [judge_targets([target], {key: v})[0]["met"] for v in (better, worse)]
    assert verdicts == [True, False]
    # retrain promotion: the metric it judges by, and which way
    from tailor.deploy.retrain import judged_metric

    output = next(o for o in ("text", "label", "score") if name in for_output(o))
    spec = Spec.model_validate(merge(_base_for(output), {"deploy": {"retrain": {"metric": name}}}))
    assert judged_metric(spec) == (name, higher)
    # the ablation table marks an improvement as met
    html = ablation_section({"bootstrap": {"confidence": 0.95}, "variants": [
        {"name": "baseline", "overrides": {}, "values": {key: 1.0}, "deltas": {}},
        {"name": "v", "overrides": {"x": 1}, "values": {key: better}, "deltas": {
            key: {"delta": better - worse, "low": min(0.5, 1.5) * (better - worse),
                  "high": max(0.5, 1.5) * (better - worse), "p_value": 0.01}}}],
        "seeds": 1, "metrics": [key]}, None)
    assert "class='met'" in html and "class='unmet'" not in html


@pytest.mark.parametrize("name", TRAINED)
def test_preference_rewards_steer_tune_and_early_stopping_the_table_s_way(name):
    higher = TABLE[name].higher_is_better
    key = f"validation/{name}"
    better, worse = (2.0, 1.0) if higher else (1.0, 2.0)
    assert key in loop_keys()
    assert Tune(metric=key).goal == ("maximize" if higher else "minimize")
    train = Train(objective="dpo", early_stopping=EarlyStopping(metric=key))
    assert improved(better, worse, train) and not improved(worse, better, train)
    assert winner(key, +1.0) == ("b" if higher else "a")


@pytest.mark.parametrize("name", SERVED + ["p95_latency_ms"])
def test_alerts_fire_the_way_the_table_says(name):
    higher = TABLE[name].higher_is_better
    right, wrong = ("below", "above") if higher else ("above", "below")
    Alert(metric=name, **{right: 0.5})
    with pytest.raises(ValidationError, match="-is-better"):
        Alert(metric=name, **{wrong: 0.5})


def test_a_reversed_target_is_refused_with_the_right_word():
    with pytest.raises(ValidationError, match="at_least"):
        Target(metric="f1_macro", at_most=0.9)
    with pytest.raises(ValidationError, match="at_most"):
        Target(metric="mse", at_least=0.1)


def test_tune_and_early_stopping_refuse_unknown_metrics():
    with pytest.raises(ValidationError, match="split/metric"):
        Tune(metric="validation/f1")
    with pytest.raises(ValidationError, match="not measured during training"):
        EarlyStopping(metric="validation/rougeL")


def _base_for(output: str) -> dict:
    if output == "text":
        return BASE_SPEC
    label = {"label": {"metric": "accuracy", "split": "test", "at_least": 0.5},
             "score": {"metric": "mse", "split": "test", "at_most": 1.0}}[output]
    return merge(BASE_SPEC, {"problem": {"output": output, "targets": [label]},
                             "data": {"fields": {"input": "question", "output": "answer"}}})
