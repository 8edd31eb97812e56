"""Budget-aware planning: measured throughput turned into a batch size and step count that fit."""

import json

import pytest

from tailor.errors import TailorError
from tailor.run import Pipeline
from tailor.spec import load_spec
from tailor.spec.train import Train
from tailor.train.plan import SAFETY, Measurement, choose_plan

MEASURED = [Measurement(8, 0.010, 8 * 40, 50 * 2**20), Measurement(16, 0.018, 16 * 40, 80 * 2**20),
            Measurement(32, 0.040, 32 * 40, 140 * 2**20)]


def test_plan_picks_the_fastest_batch_that_fits_memory_and_fills_the_budget():
    # tokens/s: batch 8 32.0k, 16 35.6k, 32 32.0k (but 140 MiB)
    cfg = Train(max_steps="auto", batch_size="auto", eval_every=100)
    plan = choose_plan(MEASURED, cfg, budget=60.0, memory_limit=100 * 2**20, eval_seconds=0.5)
    assert plan.batch_size == 16
    assert plan.max_steps == int((SAFETY * 60.0 - 0.5) / (0.018 + 0.5 / 100))
    assert plan.predicted_seconds <= SAFETY * 60.0
    near = [Measurement(8, 0.0093, 8 * 40, 50 * 2**20)] + MEASURED[1:]  # 34.4k: within 5% of the best
    assert choose_plan(near, cfg, 60.0, None, 0.5).batch_size == 8     # so the smaller batch (more updates) wins
    fixed = choose_plan(MEASURED, Train(max_steps=500, batch_size="auto"), None, None, 0.5)
    assert (fixed.batch_size, fixed.max_steps) == (16, 500)


def test_plan_errors_say_which_limit_cannot_be_met():
    cfg = Train(max_steps="auto", batch_size="auto")
    with pytest.raises(TailorError, match="max_memory: even batch size 8 needs about 50 MiB"):
        choose_plan(MEASURED, cfg, budget=60.0, memory_limit=10 * 2**20, eval_seconds=0.1)
    with pytest.raises(TailorError, match="time_budget: 0s does not fit one step"):
        choose_plan(MEASURED, cfg, budget=0.01, memory_limit=None, eval_seconds=0.1)
    with pytest.raises(TailorError, match="max_steps: auto needs problem.constraints.time_budget"):
        choose_plan(MEASURED, cfg, budget=None, memory_limit=None, eval_seconds=0.1)


def test_planned_run_stays_within_its_time_budget(make_spec, tmp_path):
    budget = 12.0
    spec = load_spec(make_spec({"problem": {"constraints": {"time_budget": f"{budget:.0f}s"}},
                                "train": {"max_steps": "auto", "batch_size": "auto", "eval_every": 20}}))
    run_dir = Pipeline(spec, tmp_path / "runs").run(until="train")
    plan = json.loads((run_dir / "train" / "plan.json").read_text())
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert plan["batch_size"] in {m["batch_size"] for m in plan["measured"]} and plan["max_steps"] >= 1
    assert plan["predicted_seconds"] + plan["planning_seconds"] <= budget
    assert summary["batch_size"] == plan["batch_size"] and summary["steps"] <= plan["max_steps"]
    assert plan["planning_seconds"] + summary["seconds"] <= budget * 1.15   # the loop also stops at the budget


def test_compute_optimal_shape_grows_with_compute_and_fits_it():
    from tailor.models.size import SHAPES, TOKENS_PER_PARAM, compute_optimal_shape, shape_params

    small, _ = compute_optimal_shape(flops_per_s=20e9, budget=600)
    big, reason = compute_optimal_shape(flops_per_s=400e12, budget=3600)
    assert SHAPES.index(small) < SHAPES.index(big)
    for shape, flops, budget in ((small, 20e9, 600), (big, 400e12, 3600)):
        n = shape_params(shape[0], shape[2])
        assert 6 * n * TOKENS_PER_PARAM * n <= SAFETY * flops * budget   # its compute-optimal run fits
    assert "compute-optimal" in reason
    capped, _ = compute_optimal_shape(flops_per_s=400e12, budget=3600, memory_limit=64 * 2**20)
    assert shape_params(capped[0], capped[2]) * 16 <= 64 * 2**20


def test_scratch_size_auto_is_chosen_from_the_budget(make_spec, tmp_path):
    spec = load_spec(make_spec({"problem": {"constraints": {"time_budget": "20s"}},
                                "model": {"arch": {"size": "auto"}}}))
    run_dir = Pipeline(spec, tmp_path / "runs").run(until="model")
    report = json.loads((run_dir / "model" / "report.json").read_text())
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert "compute-optimal" in report["sizing"] and f"{config['n_layer']} layers x {config['n_embd']} wide" in report["sizing"]
    with pytest.raises(TailorError, match="size: auto needs problem.constraints.time_budget"):
        Pipeline(load_spec(make_spec({"model": {"arch": {"size": "auto"}}}, name="nobudget.yaml")),
                 tmp_path / "runs2").run(until="model")



def test_timing_a_slow_step_stops_once_it_has_cost_its_share_of_the_budget():
    import contextlib

    import torch

    from tailor.models.transformer import Transformer, TransformerConfig
    from tailor.train.plan import measure

    drawn: list[int] = []

    def batches_for(size):
        def batch(step):
            drawn.append(step)
            ids = torch.randint(0, 50, (size, 9), generator=torch.Generator().manual_seed(step))
            return {"input_ids": ids[:, :-1], "targets": ids[:, 1:], "lengths": torch.full((size,), 8)}
        return batch

    def timed(budget):
        drawn.clear()
        model = Transformer(TransformerConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=16))
        return measure(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), batches_for, [2],
                       torch.device("cpu"), contextlib.nullcontext, budget=budget)[0]

    slow = timed(1e-6)  # the warm-up step alone used its share: it is the figure, nothing more is run
    assert drawn == [0] and slow.seconds_per_step > 0 and slow.tokens_per_step == 16
    timed(3600.0)
    assert drawn == [0, 1, 2, 3]  # a step that is cheap next to the budget: the warm-up and three timed ones
    timed(None)
    assert drawn == [0, 1, 2, 3]
