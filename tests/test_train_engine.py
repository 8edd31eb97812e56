"""The training engine end to end: exact resume, damaged checkpoints, early stopping, NaN, accumulation, DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tailor.train.batches
from tailor.run import Pipeline, read_run, work_dir
from tailor.spec import load_spec

# checkpoints every 4 steps, validation every 6, dropout on: the RNG must be restored too
RESUMABLE = {"model": {"arch": {"dropout": 0.1}},
             "train": {"max_steps": 18, "eval_every": 6, "checkpoints": {"every": 4, "keep_last": 2}}}


def rows(run_dir: Path, split: str = "train") -> list[tuple[int, float]]:
    lines = (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["loss"]) for r in map(json.loads, lines) if r["split"] == split]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "train" / "model" / "model.safetensors"))


def crashed_run(spec_path: Path, runs: Path, monkeypatch, step: int, batches=tailor.train.batches.PairBatches) -> Path:
    """The run folder of a training that died when it asked for batch `step` (as a kill would, in-process)."""
    original = batches.__call__

    def dying(self, s):
        if s == step:
            raise KeyboardInterrupt("killed")
        return original(self, s)

    with monkeypatch.context() as m:
        m.setattr(batches, "__call__", dying)
        with pytest.raises(KeyboardInterrupt):
            Pipeline(load_spec(spec_path), runs).run(until="train")
    return next((runs / "tiny").iterdir())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run of RESUMABLE, the reference curve."""
    import yaml

    from conftest import BASE_SPEC, merge, write_pairs

    root = tmp_path_factory.mktemp("reference")
    write_pairs(root / "data" / "items.jsonl")
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(merge(BASE_SPEC, RESUMABLE)))
    return Pipeline(load_spec(path), root / "runs").run(until="train")


def test_resumed_run_repeats_the_uninterrupted_curve(make_spec, tmp_path, monkeypatch, uninterrupted):
    run_dir = crashed_run(make_spec(RESUMABLE), tmp_path / "runs", monkeypatch, 10)
    saved = sorted(p.name for p in (work_dir(run_dir, "train") / "checkpoints").iterdir())
    assert saved == ["step-0000006", "step-0000008"]  # the last two (step 6 is also the best so far)
    resumed = Pipeline(load_spec(make_spec(RESUMABLE)), tmp_path / "runs").run(until="train")
    assert resumed == run_dir and read_run(run_dir)["stages"]["train"]["status"] == "done"
    assert rows(resumed) == rows(uninterrupted)                    # every step's loss, bit for bit
    assert rows(resumed, "validation") == rows(uninterrupted, "validation")
    for name, tensor in weights(uninterrupted).items():
        assert torch.equal(tensor, weights(resumed)[name]), name
    assert not work_dir(run_dir, "train").exists()                 # committed: the work folder is gone


def test_damaged_latest_checkpoint_falls_back_to_the_previous(make_spec, tmp_path, monkeypatch, uninterrupted, capsys):
    run_dir = crashed_run(make_spec(RESUMABLE), tmp_path / "runs", monkeypatch, 13)
    checkpoints = work_dir(run_dir, "train") / "checkpoints"
    latest = checkpoints / "step-0000012"
    blob = latest / "model.safetensors"
    blob.write_bytes(blob.read_bytes()[:-64] + bytes(64))          # a flipped tail: same size, wrong checksum
    half = checkpoints / "step-0000016"                            # a write that never finished: no manifest
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    monkeypatch.setenv("COLUMNS", "500")  # one message a line
    resumed = Pipeline(load_spec(make_spec(RESUMABLE)), tmp_path / "runs").run(until="train")
    err = capsys.readouterr().err
    assert "step-0000016 is damaged (no manifest" in err
    assert "step-0000012 is damaged (model.safetensors does not match its checksum)" in err
    assert "resuming from" in err and "step-0000008" in err
    assert rows(resumed) == rows(uninterrupted)


def lora_spec(tmp_path: Path, tiny_llama_dir: Path) -> Path:
    """A packed LoRA fine-tune of a tiny random Llama; adapter dropout on, so the RNG must be restored too."""
    import yaml

    from conftest import BASE_SPEC, merge, write_pairs

    spec = merge(BASE_SPEC, {"tokenizer": {"type": "pretrained"},
                             "train": {"max_steps": 10, "eval_every": 5, "packing": True, "optimizer": {"lr": 1e-2},
                                       "checkpoints": {"every": 4, "keep_last": 2}}})
    spec["model"] = {"base": str(tiny_llama_dir), "adapt": {"lora": {"r": 4, "alpha": 8, "dropout": 0.1}}}
    if not (tmp_path / "data" / "items.jsonl").exists():
        write_pairs(tmp_path / "data" / "items.jsonl")
    path = tmp_path / "lora.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_lora_run_checkpoints_its_adapters_and_resumes_exactly(tmp_path, monkeypatch, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    uninterrupted = Pipeline(load_spec(lora_spec(tmp_path / "a", tiny_llama_dir)), tmp_path / "a" / "runs").run(
        until="train")
    path = lora_spec(tmp_path / "b", tiny_llama_dir)
    run_dir = crashed_run(path, tmp_path / "b" / "runs", monkeypatch, 6, tailor.train.batches.PackedBatches)
    latest = work_dir(run_dir, "train") / "checkpoints" / "step-0000004"
    held = load_file(str(latest / "model.safetensors"))
    assert held and all("lora_" in name for name in held)           # the adapters, not the frozen base
    assert json.loads((latest / "state.json").read_text())["trained_only"] is True
    resumed = Pipeline(load_spec(path), tmp_path / "b" / "runs").run(until="train")
    assert resumed == run_dir
    assert rows(resumed) == rows(uninterrupted)                    # every step's loss, bit for bit
    assert rows(resumed, "validation") == rows(uninterrupted, "validation")
    final = weights(resumed)
    assert not any("lora" in name for name in final)               # the trained model is merged
    for name, tensor in weights(uninterrupted).items():
        assert torch.equal(tensor, final[name]), name
    base = load_file(str(tiny_llama_dir / "model.safetensors"))
    assert not torch.equal(final["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    AutoModelForCausalLM.from_pretrained(str(resumed / "train" / "model"))  # a plain transformers folder


def test_trained_only_checkpoint_must_fit_the_model(tmp_path, tiny_llama_dir):
    from tailor.errors import TailorError
    from tailor.models.adapt import prepare
    from tailor.models.pretrained import load_pretrained
    from tailor.spec.model import Adapt
    from tailor.train.checkpoint import Checkpoints

    def adapted(targets):
        model = prepare(load_pretrained(str(tiny_llama_dir), "causal_lm"), Adapt(lora={"r": 2, "target_modules": targets}),
                        0.0, {"steps": 1, "epochs": 1}).model
        return model, {n for n, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}

    model, trained = adapted(["q_proj"])
    Checkpoints(tmp_path, trained=trained).save(model, torch.optim.AdamW(model.parameters()), 1, {}, None)
    other, other_trained = adapted(["v_proj"])
    with pytest.raises(TailorError, match=r"step-0000001: holds only trained weights, and they do not fit the model "
                                          r"being trained \(8 names differ"):
        Checkpoints(tmp_path, trained=other_trained).load(tmp_path / "step-0000001", other)


def test_early_stopping_keeps_the_best_weights(make_spec, tmp_path):
    # an improvement must beat the best by 100 nats: after the first pass nothing counts
    spec = load_spec(make_spec({"train": {"max_steps": 40, "eval_every": 3,
                                          "early_stopping": {"patience": 2, "min_delta": 100.0}}}))
    run_dir = Pipeline(spec, tmp_path / "runs").run(until="train")
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert summary["steps"] == 9 and summary["stopped_by"].startswith("early stopping")
    assert summary["best_validation"] == {"metric": "validation/loss", "value": rows(run_dir, "validation")[0][1],
                                          "step": 3}
    assert summary["final_weights"] == "best validation checkpoint (step 3)"
    best_dir = run_dir / "train" / "checkpoints" / "step-0000003"
    best = load_file(str(best_dir / "model.safetensors"))
    for alias, name in json.loads((best_dir / "state.json").read_text())["aliases"].items():
        best[alias] = best[name]                                    # tied weights are stored once
    for name, tensor in weights(run_dir).items():
        assert torch.equal(tensor, best[name]), name


def test_non_finite_loss_stops_cleanly_with_the_last_good_checkpoint(make_spec, tmp_path):
    # plain SGD whose weight decay multiplies the weights by -99 a step: they overflow within a few steps
    spec = load_spec(make_spec({"train": {"max_steps": 30, "eval_every": 2, "grad_clip": None,
                                          "optimizer": {"name": "sgd", "momentum": 0, "lr": 100, "weight_decay": 1},
                                          "schedule": {"name": "constant", "warmup_steps": 0},
                                          "checkpoints": {"keep_best": False}}}))
    run_dir = Pipeline(spec, tmp_path / "runs").run(until="train")
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert summary["stopped_by"].startswith("non-finite")
    assert summary["final_weights"].startswith("last good checkpoint")
    assert any("became non-finite" in w for w in summary["warnings"])
    assert all(torch.isfinite(t).all() for t in weights(run_dir).values())


def test_gradient_accumulation_matches_one_big_batch(make_spec, tmp_path):
    exact = {"max_steps": 6, "precision": "fp32"}  # bf16 autocast rounds differently for other shapes
    one = Pipeline(load_spec(make_spec({"train": exact})), tmp_path / "a").run(until="train")
    four = Pipeline(load_spec(make_spec({"train": exact | {"grad_accum": 4}})), tmp_path / "b").run(until="train")
    for (s1, a), (s2, b) in zip(rows(one), rows(four)):
        assert s1 == s2 and a == pytest.approx(b, rel=1e-5)


def test_tensorboard_events_hold_the_logged_curves(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir = finished_run
    events = EventAccumulator(str(run_dir / "train" / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "validation/loss", "validation/accuracy"} <= set(events.Tags()["scalars"])
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert logged == [(s, pytest.approx(v, rel=1e-6)) for s, v in rows(run_dir)]


def test_resume_flag_needs_an_interrupted_training(make_spec, tmp_path):
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "train", str(make_spec()), "--resume",
                          "--runs-dir", str(tmp_path / "r")], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "300"})
    assert res.returncode == 2 and "--resume: no interrupted training of tiny to continue" in res.stderr
    assert "Traceback" not in res.stderr


def test_mlflow_receives_params_and_every_logged_metric(make_spec, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = load_spec(make_spec({"train": {"max_steps": 6, "eval_every": 3, "tracking": {"mlflow_uri": uri}}}))
    run_dir = Pipeline(spec, tmp_path / "runs").run(until="train")
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])[0]
    assert run.data.params["max_steps"] == "6" and run.data.params["optimizer"] == "adamw"
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert history == [(s, pytest.approx(v, rel=1e-6)) for s, v in rows(run_dir)]
    assert {"validation/loss", "validation/accuracy", "train/lr"} <= set(run.data.metrics)


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory):
    """The same spec trained by one process, by 2 with DDP and by 2 with FSDP (gloo on CPU)."""
    import yaml

    from conftest import BASE_SPEC, merge, write_pairs

    root = tmp_path_factory.mktemp("distributed")
    write_pairs(root / "data" / "items.jsonl")
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    fp32 = {"max_steps": 8, "eval_every": 4, "precision": "fp32", "checkpoints": {"every": 2}}  # bf16 rounds by shape
    runs = {}
    for label, strategy, nproc in (("one", "ddp", 1), ("ddp", "ddp", 2), ("fsdp", "fsdp", 2)):
        spec = root / f"{label}.yaml"
        spec.write_text(yaml.safe_dump(merge(BASE_SPEC, {"train": fp32 | {"distributed": {"strategy": strategy}}})))
        res = subprocess.run([sys.executable, "-m", "tailor.cli", "train", str(spec), "--nproc", str(nproc),
                              "--runs-dir", str(root / label)], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        runs[label] = next((root / label / "tiny").iterdir())
    return runs


def test_two_processes_match_one_with_the_same_global_batch(distributed_runs):
    one, two = distributed_runs["one"], distributed_runs["ddp"]
    assert json.loads((two / "train" / "summary.json").read_text())["processes"] == 2
    assert len(rows(two)) == 8
    for (s1, a), (s2, b) in zip(rows(one) + rows(one, "validation"), rows(two) + rows(two, "validation")):
        assert s1 == s2 and a == pytest.approx(b, rel=1e-5)
    for name, tensor in weights(one).items():
        torch.testing.assert_close(weights(two)[name], tensor, rtol=1e-4, atol=1e-5)


def test_fsdp_on_two_processes_matches_ddp_with_whole_checkpoints(distributed_runs):
    ddp, fsdp = distributed_runs["ddp"], distributed_runs["fsdp"]
    for (s1, a), (s2, b) in zip(rows(ddp), rows(fsdp)):
        assert s1 == s2 and a == pytest.approx(b, rel=1e-4)
    for name, tensor in weights(ddp).items():                      # gathered whole from the shards
        torch.testing.assert_close(weights(fsdp)[name], tensor, rtol=1e-3, atol=1e-4)
    checkpoint = fsdp / "train" / "checkpoints" / "step-0000008"
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["step"] == 8
    moments = load_file(str(checkpoint / "optimizer.safetensors"))
    exp_avg = moments[state["optimizer"]["state"]["h.0.attn.c_attn.weight"]["exp_avg"]["tensor"]]
    assert exp_avg.shape == weights(fsdp)["h.0.attn.c_attn.weight"].shape   # not one rank's shard
