"""No padding waste: length-grouped batches (seeded, resumable), real-token throughput, the padding fraction."""

import json
import random
import time

import pytest
import torch

import tailor.train.batches
from tailor.run import Pipeline
from tailor.spec import load_spec
from tailor.train.batches import MEGABATCH, PairBatches
from tailor.train.label_batches import collate_labels


def mixed_lengths(n: int = 2000, seed: int = 0) -> list[tuple[list[int], int]]:
    """Label examples whose lengths spread as real short texts do: mostly short, a long tail up to 512."""
    rng = random.Random(seed)
    return [([1] * min(512, max(3, int(rng.lognormvariate(4.3, 0.6)))), rng.randrange(5)) for _ in range(n)]


def padding(batches: PairBatches, steps: int) -> float:
    real = total = 0
    for step in range(steps):
        batch = batches(step)
        real += int(batch["attention_mask"].sum())
        total += batch["input_ids"].numel()
    return 1 - real / total


def test_grouping_by_length_removes_most_of_the_padding():
    data = mixed_lengths()
    plain = PairBatches(data, 32, 0, seed=3, collate_fn=collate_labels)
    grouped = PairBatches(data, 32, 0, seed=3, collate_fn=collate_labels, group_by_length=True)
    epoch = plain.per_epoch
    before, after = padding(plain, epoch), padding(grouped, epoch)
    assert before > 0.5 and after < 0.15 and after < before / 4, (before, after)  # measured: 66% and 11%
    # every kept example once per epoch, as without grouping (the same partial last batch left out)
    seen = sorted(j for step in range(epoch) for j in grouped.order(0)[step * 32:(step + 1) * 32])
    assert seen == sorted(plain.order(0)[:epoch * 32])
    # the batch with the longest example comes first, so a batch too large for memory fails at once
    assert grouped(0)["input_ids"].shape[1] == max(len(data[j][0]) for j in grouped.order(0))


def test_grouped_batches_are_a_function_of_seed_and_step_so_a_resume_draws_the_same():
    data = mixed_lengths(500)
    a = PairBatches(data, 8, 0, seed=1, collate_fn=collate_labels, group_by_length=True)
    b = PairBatches(data, 8, 0, seed=1, collate_fn=collate_labels, group_by_length=True)
    steps = [0, 5, a.per_epoch - 1, a.per_epoch, 3 * a.per_epoch + 2]
    run = {s: a(s) for s in range(max(steps) + 1)}
    resumed = {s: b(s) for s in reversed(steps)}  # a fresh object asked out of order, as after a resume
    for s in steps:
        assert all(torch.equal(run[s][k], resumed[s][k]) for k in run[s]), s
    other = PairBatches(data, 8, 0, seed=2, collate_fn=collate_labels, group_by_length=True)
    assert a.order(0) != other.order(0) and a.order(0) != a.order(1)  # seeded, and reshuffled every epoch
    # batch order is shuffled, not sorted: the lengths do not run down a megabatch in step order
    widths = [a(s)["input_ids"].shape[1] for s in range(1, a.per_epoch)]
    falling = sum(x >= y for x, y in zip(widths, widths[1:])) / (len(widths) - 1)
    assert falling < 0.8 and len(data) > MEGABATCH * 8, falling  # sorted megabatches alone: nearly 1


def test_validation_batches_score_the_same_examples_with_less_padding():
    data = mixed_lengths(300)
    plain = PairBatches(data, 16, 0, seed=0, collate_fn=collate_labels)
    grouped = PairBatches(data, 16, 0, seed=0, collate_fn=collate_labels, group_by_length=True)
    a, b = list(plain.eval_batches(5)), list(grouped.eval_batches(5))
    assert sorted(x.item() for batch in a for x in batch["labels"]) == sorted(x.item() for batch in b for x in batch["labels"])
    assert sum(x["input_ids"].numel() for x in b) < 0.6 * sum(x["input_ids"].numel() for x in a)


def write_mixed_pairs(path, n: int = 120) -> None:
    rng = random.Random(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    rows = [{"question": " ".join(rng.choice(words) for _ in range(rng.choice([2, 3, 40, 60]))),
             "answer": rng.choice(words)} for _ in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("group", [False, True])
def test_the_train_summary_counts_real_tokens_and_reports_the_padding(make_spec, tmp_path, group):
    write_mixed_pairs(tmp_path / "data" / "items.jsonl")
    spec = make_spec({"tokenizer": {"vocab_size": 300}, "train": {"group_by_length": group, "max_steps": 10}})
    run_dir = Pipeline(load_spec(spec), tmp_path / f"runs-{group}").run(until="train")
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    batches = make_train_batches(run_dir, spec)
    real = sum(int(batches(s)["lengths"].sum()) for s in range(10))
    assert summary["tokens"] == real  # padding is not throughput
    assert [r for r in rows if r["split"] == "train"][-1]["tokens"] == real
    assert (summary["padding_fraction"] < 0.2) if group else (summary["padding_fraction"] > 0.3), summary


def make_train_batches(run_dir, spec_path):
    from tailor.models import context_length, load_model
    from tailor.splits import load_split
    from tailor.tokenizer import Codec

    spec, block = load_spec(spec_path), context_length(load_model(run_dir / "model"))
    return tailor.train.batches.make_batches(
        load_split(run_dir / "data", "train"), Codec.load(run_dir / "tokenizer"), block, spec.train.batch_size,
        spec.train.seed, fields=spec.data.fields, output="text", group_by_length=spec.train.group_by_length)


def test_the_schedule_ends_where_the_time_budget_ends_the_run(make_spec, tmp_path, monkeypatch):
    """A budget that stops the run before max_steps: the learning rate still decays to its floor at the last step."""
    original = tailor.train.batches.PairBatches.__call__

    def slow(self, step):
        time.sleep(0.04)  # a machine slower than the step count assumed
        return original(self, step)

    monkeypatch.setattr(tailor.train.batches.PairBatches, "__call__", slow)
    spec = make_spec({"train": {"max_steps": 400, "max_time": "8s", "eval_every": 50,
                                "optimizer": {"lr": 1e-3}, "schedule": {"name": "linear", "min_lr_ratio": 0.0}}})
    run_dir = Pipeline(load_spec(spec), tmp_path / "runs").run(until="train")
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    rows = [json.loads(x) for x in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["split"] == "train"][-1]
    # the fitted schedule ends at the last step run, or (on a machine whose pace changed at the end) a step or two on
    assert summary["steps"] < 400 and 0 <= summary["schedule_steps"] - summary["steps"] <= 2, summary
    assert summary["stopped_by"].startswith("time budget"), summary["stopped_by"]
    # linear to 0 after 2 warmup steps: the last step's rate is the schedule's last, not one cut near the peak
    assert last["step"] == summary["steps"] and last["lr"] <= 1e-3 / (summary["schedule_steps"] - 2) + 1e-12, last
    assert summary["seconds"] <= 8.0 + 1.0


def test_the_report_gives_real_token_throughput_and_the_padding(finished_run):
    _, run_dir = finished_run
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    html = (run_dir / "report.html").read_text()
    assert "tokens/s (real)" in html and f"{summary['padding_fraction']:.1%}" in html
