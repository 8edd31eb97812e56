"""Training defaults that follow the road: scratch, full fine-tune, head only, LoRA, QLoRA; shown by spec show."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import BASE_SPEC, merge
from tailor.errors import TailorError
from tailor.spec import Spec, dump_spec, parse_spec, show_spec
from tailor.spec.roads import ROADS
from tailor.spec.train import Train, auto_eval_every
from tailor.train.plan import Measurement, choose_plan, steps_in_budget

LABELS = merge(BASE_SPEC, {"problem": {"output": "label", "targets": [{"metric": "accuracy", "at_least": 0.5}],
                                       "constraints": {"time_budget": "20m"}},
                           "data": {"fields": {"input": "question", "output": "answer"}}})
del LABELS["tokenizer"], LABELS["train"]  # as a new user writes it: no tokenizer, nothing in train


def spec_of(tree: dict) -> Spec:
    return Spec.model_validate(tree)


def test_a_full_fine_tune_gets_bert_defaults_and_follows_the_base_tokenizer():
    spec = spec_of(merge(LABELS, {"model": {"base": "minilm-l6"}}))
    t = spec.train
    assert spec.road == "full fine-tune" and spec.tokenizer.type == "pretrained"
    assert (t.optimizer.lr, t.optimizer.weight_decay, t.optimizer.betas) == (5e-5, 0.01, (0.9, 0.999))
    assert (t.schedule.name, t.schedule.warmup_steps, t.schedule.warmup_ratio, t.schedule.min_lr_ratio) == \
        ("linear", None, 0.06, 0.0)
    assert t.max_steps == "auto" and t.eval_every == "auto" and t.group_by_length
    assert t.schedule.warmup_for(1000) == 60


def test_the_scratch_road_keeps_the_previous_defaults():
    spec = spec_of(merge(LABELS, {"problem": {"constraints": {"time_budget": None}}}))
    t, plain = spec.train, Train()
    assert spec.road == "scratch"
    for path in ("optimizer.lr", "optimizer.weight_decay", "optimizer.betas", "schedule.name",
                 "schedule.warmup_steps", "schedule.min_lr_ratio", "max_steps", "group_by_length"):
        a, b = t, plain
        for part in path.split("."):
            a, b = getattr(a, part), getattr(b, part)
        assert a == b, path
    assert (t.optimizer.lr, t.optimizer.betas, t.schedule.warmup_steps, t.max_steps) == (1e-3, (0.9, 0.95), 100, 1000)


@pytest.mark.parametrize("adapt, road, lr, wd", [
    ({"lora": {"r": 4}}, "LoRA", 2e-4, 0.0),
    ({"lora": {"r": 4, "quantize": "nf4"}}, "QLoRA", 2e-4, 0.0),
    ({"freeze": {"bottom_layers": "all"}}, "head only", 1e-3, 0.01),
    ({"freeze": {"bottom_layers": "all", "unfreeze_every": 2}}, "full fine-tune", 5e-5, 0.01),  # ULMFiT thaws all
])
def test_each_road_has_its_own_rates(adapt, road, lr, wd):
    spec = spec_of(merge(LABELS, {"model": {"base": "minilm-l6", "adapt": adapt}}))
    assert (spec.road, spec.train.optimizer.lr, spec.train.optimizer.weight_decay) == (road, lr, wd)
    assert all(source for _, _, source in ROADS[road].values)  # every value names where it comes from


def test_values_the_spec_writes_are_kept_and_not_marked():
    spec = spec_of(merge(LABELS, {"model": {"base": "minilm-l6"},
                                  "train": {"optimizer": {"lr": 1e-4}, "schedule": {"warmup_steps": 7},
                                            "max_steps": 300}}))
    t = spec.train
    assert (t.optimizer.lr, t.schedule.warmup_steps, t.schedule.warmup_ratio, t.max_steps) == (1e-4, 7, None, 300)
    assert t.optimizer.weight_decay == 0.01  # left out: still the road's
    assert "train.optimizer.lr" not in spec.chosen and "train.schedule.warmup_ratio" not in spec.chosen
    assert "train.optimizer.weight_decay" in spec.chosen
    ratio = spec_of(merge(LABELS, {"model": {"base": "minilm-l6"}, "train": {"schedule": {"warmup_ratio": 0.2}}}))
    assert (ratio.train.schedule.warmup_steps, ratio.train.schedule.warmup_ratio) == (None, 0.2)


def test_the_resolved_spec_reads_back_to_the_same_values():
    spec = spec_of(merge(LABELS, {"model": {"base": "minilm-l6"}}))
    again = parse_spec(dump_spec(spec))
    assert again.model_dump() == spec.model_dump()
    assert again.chosen == {}  # every value is written now


def test_spec_show_marks_each_road_value_with_its_reason(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(merge(LABELS, {"model": {"base": "minilm-l6"}, "train": {"batch_size": 16}})))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "items.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "spec", "show", str(path)], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    lr = next(x for x in lines if x.strip().startswith("lr:"))
    assert lr.split("#")[0].strip() == "lr: 5.0e-05" and "road: full fine-tune (BERT (Devlin et al. 2019)" in lr
    assert any(x.strip().startswith("type: pretrained") and "follows the pretrained model.base" in x for x in lines)
    assert any(x.strip().startswith("max_steps: auto") and "fills the budget" in x for x in lines)
    batch = next(x for x in lines if x.strip().startswith("batch_size:"))
    assert "#" not in batch  # written by the spec: no mark
    assert yaml.safe_load(res.stdout)["train"]["optimizer"]["lr"] == 5e-5  # the marks are YAML comments
    assert show_spec(parse_spec(path.read_text(), base_dir=tmp_path)) == res.stdout.rstrip("\n") + "\n"


def test_eval_every_auto_gives_at_least_five_validation_points():
    for steps in (5, 12, 152, 499, 500, 1000, 20_000):
        every = auto_eval_every(steps)
        assert steps // every >= 5 and every <= 100, (steps, every)
    assert auto_eval_every(1000) == 100  # long runs validate as before


def test_a_budgeted_plan_fills_the_budget_with_five_validations_in_a_short_run():
    measured = [Measurement(32, 1.0, 32 * 90, 2**20)]
    plan = choose_plan(measured, Train(max_steps="auto", batch_size=32), budget=200.0, memory_limit=None,
                       eval_seconds=4.0)
    # 0.9 * 200 s = 180 s: n steps of 1 s and 6 passes of 4 s
    assert plan.max_steps == 156 and plan.eval_every == 31 and plan.predicted_seconds <= 180
    assert steps_in_budget(Train(eval_every=10), 180.0, 1.0, 4.0) == int(176 / 1.4)
    long = choose_plan(measured, Train(max_steps="auto", batch_size=32), 3600.0, None, 4.0)
    assert long.eval_every == 100 and long.max_steps >= 500


def test_qlora_on_a_scratch_model_is_refused_by_the_spec():
    with pytest.raises(Exception, match="quantize: nf4 .QLoRA. quantizes a pretrained base"):
        spec_of(merge(LABELS, {"model": {"adapt": {"lora": {"quantize": "nf4"}}}}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where there is no CUDA GPU")
def test_qlora_without_a_cuda_gpu_says_what_it_needs(tmp_path):
    from tailor.models.adapt import check_quantized
    from tailor.spec.model import Lora

    with pytest.raises(TailorError, match=r"needs a CUDA GPU \(this run's device is cpu.*pip install bitsandbytes"):
        check_quantized(Lora(quantize="nf4"), torch.device("cpu"))
    check_quantized(Lora(), torch.device("cpu"))  # plain LoRA needs neither
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(merge(LABELS, {"model": {"base": "minilm-l6",
                                                            "adapt": {"lora": {"quantize": "nf4"}}}})))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "items.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "spec", "check", str(path)], capture_output=True,
                         text=True, cwd=tmp_path)
    assert res.returncode != 0
    assert "model.adapt.lora.quantize: nf4" in res.stderr + res.stdout and "CUDA GPU" in res.stderr + res.stdout


def test_an_ablation_variant_or_tuning_trial_on_another_road_gets_that_roads_defaults():
    from tailor.studies.ablation import variant_spec
    from tailor.studies.tune import with_values

    scratch = spec_of(LABELS)
    tuned = variant_spec(scratch, {"model.base": "minilm-l6"}, 0, "evaluate.ablation.variants[0]")
    assert (tuned.road, tuned.tokenizer.type, tuned.train.optimizer.lr) == ("full fine-tune", "pretrained", 5e-5)
    fine = spec_of(merge(LABELS, {"model": {"base": "minilm-l6"}}))
    lora = variant_spec(fine, {"model.adapt.lora": {"r": 4}}, 1, "evaluate.ablation.variants[0]")
    assert (lora.road, lora.train.optimizer.lr, lora.train.schedule.warmup_ratio) == ("LoRA", 2e-4, 0.03)
    trial = with_values(fine, {"train.optimizer.weight_decay": 0.05})
    assert (trial.train.optimizer.weight_decay, trial.train.optimizer.lr) == (0.05, 5e-5)
    assert variant_spec(fine, {}, 0, "x").train == fine.train  # the baseline arm is the spec itself


def test_the_train_stage_trains_with_the_roads_values(tmp_path, tiny_bert_dir, monkeypatch):
    """A tiny BERT fine-tuned with nothing in train: the logged learning rates are the full fine-tune road's."""
    from conftest import write_pairs
    from tailor.run import Pipeline
    from tailor.train.schedule import lr_at

    monkeypatch.chdir(tmp_path)
    write_pairs(tmp_path / "data" / "items.jsonl")
    tree = merge(LABELS, {"model": {"base": str(tiny_bert_dir)}, "problem": {"constraints": {"time_budget": None}},
                          "train": {"max_steps": 20, "batch_size": 8}})
    spec = spec_of(tree)
    run_dir = Pipeline(spec, tmp_path / "runs").run(until="train")
    rows = [json.loads(x) for x in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if r["split"] == "train"]
    assert lrs == pytest.approx([lr_at(i, 5e-5, 20, spec.train.schedule) for i in range(20)])
    assert lrs[0] == pytest.approx(5e-5) and lrs[-1] < 5e-6  # 6% warmup (1 step), linear decay to 0
    assert sum(r["split"] == "validation" for r in rows) >= 5  # eval_every auto: 20 steps, a pass every 4
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert 0.0 <= summary["padding_fraction"] < 0.2


def test_a_fresh_head_learns_at_its_own_rate_on_the_full_fine_tune_road(tiny_bert_dir):
    from tailor.models.adapt import prepare
    from tailor.models.pretrained import load_pretrained
    from tailor.spec.model import Adapt

    spec = spec_of(merge(LABELS, {"model": {"base": "minilm-l6"}}))
    assert spec.model.adapt.head_lr_scale == 20.0 and "model.adapt.head_lr_scale" in spec.chosen
    assert spec_of(merge(LABELS, {"model": {"base": "minilm-l6", "adapt": {"lora": {}}}})).model.adapt.head_lr_scale == 1
    model = load_pretrained(str(tiny_bert_dir), "classification", ["a", "b"])
    names = {id(p): n for n, p in model.named_parameters()}
    groups = prepare(model, Adapt(head_lr_scale=20.0), 0.01, {"steps": 1, "epochs": 1}).param_groups
    fast = {names[id(p)] for g in groups if g["lr_scale"] == 20.0 for p in g["params"]}
    assert fast == {"classifier.weight", "classifier.bias"}
    assert all(g["lr_scale"] == 1.0 for g in groups if not {names[id(p)] for p in g["params"]} & fast)
    lm = load_pretrained(str(tiny_bert_dir), "classification", ["a", "b"])
    lm.tailor_head = "causal_lm"  # a language model's output layer is pretrained: no group of its own
    assert {g["lr_scale"] for g in prepare(lm, Adapt(head_lr_scale=20.0), 0.0, {"steps": 1, "epochs": 1}).param_groups} == {1.0}


@pytest.mark.parametrize("base, adapt, road, lr", [
    ("smollm2-135m", {}, "preference", 1e-6),
    ("smollm2-135m", {"lora": {"r": 4}}, "preference, LoRA", 5e-6),
    ("scratch", {}, "scratch", 1e-3),  # nothing pretrained to stay close to: the scratch road's rates
])
def test_preference_tuning_has_its_own_road(base, adapt, road, lr):
    text = merge(BASE_SPEC, {"problem": {"output": "text", "targets": [{"metric": "loss", "at_most": 9.0}]},
                             "data": {"fields": {"input": "prompt", "output": "chosen", "rejected": "rejected"}},
                             "model": {"base": base, "adapt": adapt}, "train": {"objective": "dpo"}})
    del text["tokenizer"]
    if base == "scratch":
        text["tokenizer"] = {"type": "bpe", "vocab_size": 300}
    spec = spec_of(text)
    assert (spec.road, spec.train.optimizer.lr) == (road, lr)
    assert spec.chosen["train.optimizer.lr"].startswith(f"road: {road} (")
    likelihood = spec_of(merge(text, {"train": {"objective": "likelihood"}, "data": {"fields": {"rejected": None}}}))
    assert likelihood.road != road or base == "scratch"


@pytest.mark.parametrize("adapt, stops", [({}, True), ({"lora": {}}, True),
                                          ({"freeze": {"bottom_layers": "all"}}, True)])
def test_pretrained_roads_stop_when_validation_stops_improving_and_scratch_does_not(adapt, stops):
    spec = spec_of(merge(LABELS, {"model": {"base": "minilm-l6", "adapt": adapt}}))
    es = spec.train.early_stopping
    assert es is not None and (es.metric, es.patience) == ("validation/loss", 5)
    assert spec_of(LABELS).train.early_stopping is None  # scratch: the budget is the run
    again = spec_of(merge(LABELS, {"model": {"base": "minilm-l6", "adapt": adapt}}))
    again.train.early_stopping.patience = 9
    assert spec.train.early_stopping.patience == 5  # each spec has its own copy of the road's value


def test_the_specs_own_early_stopping_or_none_wins_over_the_road():
    mine = spec_of(merge(LABELS, {"model": {"base": "minilm-l6"}, "train": {"early_stopping": {"patience": 2}}}))
    assert mine.train.early_stopping.patience == 2 and "train.early_stopping" not in mine.chosen
    off = spec_of(merge(LABELS, {"model": {"base": "minilm-l6"}, "train": {"early_stopping": None}}))
    assert off.train.early_stopping is None
