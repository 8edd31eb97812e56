"""Preference tuning end to end: the spec's checks, a DPO run whose held-out reward accuracy rises, exact resume."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

import tailor.train.batches
from conftest import BASE_SPEC, merge
from tailor.errors import TailorError
from tailor.run import Pipeline, work_dir
from tailor.spec import Spec, load_spec
from test_train_engine import crashed_run, weights

TASKS = ["fix my bike", "water the plants", "find my keys", "paint the fence", "cook some rice", "write a letter",
         "clean the kitchen", "plan a trip", "move the sofa", "read the map", "wash the car", "feed the cat",
         "sort the files", "build a shelf", "change a tyre", "bake a cake", "mend the shirt", "tune the guitar"]
ASKS = ["can you help me {t}?", "please help me {t}", "I need to {t}, any help?", "could you {t} with me?"]
POLITE = ["of course, I would be glad to help you {t}.", "sure, happy to help you {t}, thank you for asking.",
          "certainly! let us {t} together, step by step.", "gladly, here is how to {t}: start slowly."]
RUDE = ["no, {t} yourself.", "ugh, stop asking me to {t}.", "not my problem, go {t} alone.",
        "why would I {t} for you? leave me alone."]
PREFERENCE = {"data": {"fields": {"input": "prompt", "output": "chosen", "rejected": "rejected"}},
              "train": {"objective": "dpo"}}


def write_preferences(path: Path, seed: int = 0) -> list[dict]:
    """Requests with a polite (preferred) and a rude (rejected) answer about the same task: a learnable rule."""
    rng = random.Random(seed)
    rows = [{"prompt": ask.format(t=t), "chosen": rng.choice(POLITE).format(t=t),
             "rejected": rng.choice(RUDE).format(t=t)} for t in TASKS for ask in ASKS]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def preference_spec(root: Path, override: dict | None = None) -> Path:
    if not (root / "data" / "items.jsonl").exists():
        write_preferences(root / "data" / "items.jsonl")
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(merge(merge(BASE_SPEC, PREFERENCE), override or {})))
    return path


def logged(run_dir: Path, split: str) -> list[dict]:
    """The rows metrics.jsonl holds for a split, without the wall-clock columns."""
    rows = [json.loads(x) for x in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("elapsed_s", "tokens_per_s")} for r in rows if r["split"] == split]


def test_the_spec_names_the_field_a_preference_objective_needs():
    with pytest.raises(ValidationError, match=r"data.fields.rejected: train.objective 'dpo' learns from preference"):
        Spec.model_validate(merge(BASE_SPEC, {"train": {"objective": "dpo"}}))
    with pytest.raises(ValidationError, match="rejected: 'answer' is also the input or output field"):
        Spec.model_validate(merge(BASE_SPEC, {"data": {"fields": {"rejected": "answer"}}}))
    with pytest.raises(ValidationError, match="preference pairs need `input`"):
        Spec.model_validate(merge(BASE_SPEC, {"data": {"fields": {"input": None, "output": None, "text": "t",
                                                                   "rejected": "r"}}}))
    with pytest.raises(ValidationError, match="train.objective: 'orpo' tunes a language model"):
        Spec.model_validate(merge(BASE_SPEC, {**PREFERENCE, "problem": {"output": "label", "targets": []},
                                              "train": {"objective": "orpo"}}))
    with pytest.raises(ValidationError, match="packing: the dpo objective"):
        Spec.model_validate(merge(BASE_SPEC, merge(PREFERENCE, {"train": {"packing": True}})))
    with pytest.raises(ValidationError, match="'reward_accuracy' is not measured with objective 'likelihood'"):
        Spec.model_validate(merge(BASE_SPEC, {"train": {"early_stopping": {"metric": "validation/reward_accuracy"}}}))
    with pytest.raises(ValidationError, match="'perplexity' is not measured with objective 'dpo'"):
        Spec.model_validate(merge(BASE_SPEC, merge(PREFERENCE, {
            "train": {"early_stopping": {"metric": "validation/perplexity"}}})))
    with pytest.raises(ValidationError, match="tune.metric: 'reward_margin' is measured only by a preference"):
        Spec.model_validate(merge(BASE_SPEC, {"tune": {"metric": "validation/reward_margin"}}))
    spec = Spec.model_validate(merge(BASE_SPEC, merge(PREFERENCE, {
        "train": {"early_stopping": {"metric": "validation/reward_accuracy"}}})))
    assert spec.train.preference.beta == 0.1 and spec.train.early_stopping.maximize


def test_a_pair_without_its_rejected_answer_is_named(tmp_path):
    path = preference_spec(tmp_path)
    rows = write_preferences(tmp_path / "data" / "items.jsonl")
    rows[5]["rejected"] = None
    (tmp_path / "data" / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TailorError, match=r"items.jsonl:6.*rejected"):
        Pipeline(load_spec(path), tmp_path / "runs").run(until="train")


DPO_RUN = {"model": {"arch": {"dropout": 0.1}},
           "train": {"max_steps": 16, "eval_every": 8, "optimizer": {"lr": 3e-3},
                     "checkpoints": {"every": 4, "keep_last": 2}}}


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory) -> Path:
    """One uninterrupted DPO run of a scratch transformer on the polite/rude pairs (dropout on)."""
    root = tmp_path_factory.mktemp("dpo")
    return Pipeline(load_spec(preference_spec(root, DPO_RUN)), root / "runs").run(until="train")


def test_dpo_raises_the_held_out_reward_accuracy_and_logs_rewards(dpo_run):
    train, validation = logged(dpo_run, "train"), logged(dpo_run, "validation")
    # the policy starts as its reference (only dropout, on in training and off in the reference, parts them)
    assert abs(train[0]["reward_margin"]) < 0.05 and train[0]["loss"] == pytest.approx(0.6931, abs=0.03)
    first, last = validation[0], validation[-1]
    assert first["step"] == 0 and first["reward_margin"] == 0.0 and first["reward_accuracy"] == 0.0  # ties
    assert last["reward_accuracy"] > 0.8 and last["reward_margin"] > 0.5, validation
    assert last["reward_chosen"] > last["reward_rejected"]
    summary = json.loads((dpo_run / "train" / "summary.json").read_text())
    assert summary["preference"]["reference"].startswith("a frozen copy of the initial weights")
    assert [r["step"] for r in summary["preference"]["validation"]] == [0, 16]
    assert summary["preference"]["validation"][-1]["reward_accuracy"] == last["reward_accuracy"]
    assert (dpo_run / "train" / "plots" / "reward_accuracy.png").is_file()


def test_a_killed_dpo_run_resumes_on_the_same_curve(tmp_path, monkeypatch, dpo_run):
    path = preference_spec(tmp_path, DPO_RUN)
    run_dir = crashed_run(path, tmp_path / "runs", monkeypatch, 10, tailor.train.batches.PairBatches)
    assert (work_dir(run_dir, "train") / "checkpoints" / "step-0000008").is_dir()
    resumed = Pipeline(load_spec(path), tmp_path / "runs").run(until="train")
    assert resumed == run_dir
    for split in ("train", "validation"):                         # losses and rewards, bit for bit
        assert logged(resumed, split) == logged(dpo_run, split)
    for name, tensor in weights(dpo_run).items():
        assert torch.equal(tensor, weights(resumed)[name]), name


def lora_preference_spec(root: Path, tiny_llama_dir: Path, objective: str) -> Path:
    path = preference_spec(root, {"tokenizer": {"type": "pretrained"},
                                  "train": {"objective": objective, "max_steps": 8, "eval_every": 4,
                                            "optimizer": {"lr": 1e-2}, "checkpoints": {"every": 2, "keep_last": 2}}})
    spec = yaml.safe_load(path.read_text())
    spec["model"] = {"base": str(tiny_llama_dir), "adapt": {"lora": {"r": 4, "alpha": 8, "dropout": 0.1}}}
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("objective", ["dpo", "orpo"])
def test_a_lora_preference_run_resumes_exactly(tmp_path, monkeypatch, tiny_llama_dir, objective):
    """LoRA: the DPO reference is the base with its adapters off; ORPO has none. Both resume exactly."""
    uninterrupted = Pipeline(load_spec(lora_preference_spec(tmp_path / "a", tiny_llama_dir, objective)),
                             tmp_path / "a" / "runs").run(until="train")
    path = lora_preference_spec(tmp_path / "b", tiny_llama_dir, objective)
    run_dir = crashed_run(path, tmp_path / "b" / "runs", monkeypatch, 5, tailor.train.batches.PairBatches)
    resumed = Pipeline(load_spec(path), tmp_path / "b" / "runs").run(until="train")
    assert resumed == run_dir
    for split in ("train", "validation"):
        assert logged(resumed, split) == logged(uninterrupted, split)
    summary = json.loads((resumed / "train" / "summary.json").read_text())
    expected = "the base model with its LoRA adapters switched off" if objective == "dpo" else "none"
    assert summary["preference"]["reference"].startswith(expected)
    first = logged(resumed, "train")[0]
    if objective == "dpo":  # LoRA's B starts at zero: the policy equals its reference at the first step
        assert first["reward_margin"] == 0.0 and first["loss"] == pytest.approx(0.6931, abs=1e-4)
    else:  # ORPO's rewards are the policy's own mean log-probabilities
        assert first["reward_chosen"] < 0 and first["reward_rejected"] < 0


def test_two_processes_train_dpo_as_one_does(tmp_path):
    """DDP (gloo): each rank's share of the pairs, weighted by its share, gives the one-process gradient and rewards."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    fp32 = {"train": {"max_steps": 6, "eval_every": 3, "precision": "fp32", "checkpoints": {"every": 3}}}
    runs = {}
    for nproc in (1, 2):
        spec = preference_spec(tmp_path, fp32)
        res = subprocess.run([sys.executable, "-m", "tailor.cli", "train", str(spec), "--nproc", str(nproc),
                              "--runs-dir", str(tmp_path / str(nproc))], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        runs[nproc] = next((tmp_path / str(nproc) / "tiny").iterdir())
    for split in ("train", "validation"):
        one, two = logged(runs[1], split), logged(runs[2], split)
        assert len(one) == len(two) > 0
        for a, b in zip(one, two):  # the token counts differ: each rank trims its own share's padding
            keys = ("step", "loss", "reward_chosen", "reward_rejected", "reward_accuracy", "reward_margin")
            assert {k: a[k] for k in keys} == pytest.approx({k: b[k] for k in keys}, rel=1e-4, abs=1e-6)
    for name, tensor in weights(runs[1]).items():
        torch.testing.assert_close(weights(runs[2])[name], tensor, rtol=1e-4, atol=1e-5)


def test_each_pair_holds_the_preferred_answer_first_and_scores_only_answers(dpo_run):
    from tailor.labels import IGNORE
    from tailor.spec.data import Fields
    from tailor.tokenizer import Codec
    from tailor.train.preference_batches import collate_preferences, encode_preferences

    codec = Codec.load(dpo_run / "tokenizer")
    record = {"q": "can you help me plan a trip?", "good": "gladly, let us plan it.", "bad": "no, plan it yourself."}
    fields = Fields(input="q", output="good", rejected="bad")
    batch = collate_preferences(encode_preferences([record], fields, codec, 64), codec.pad_id)
    answers = [codec.decode([t for t in row.tolist() if t != IGNORE and t != codec.eos_id]) for row in batch["targets"][0]]
    assert answers == [record["good"], record["bad"]]
    assert "nll_targets" not in batch
    with_prompt = collate_preferences(encode_preferences([record], fields, codec, 64, "all"), codec.pad_id, nll=True)
    nll = [t for t in with_prompt["nll_targets"][0].tolist() if t != IGNORE and t != codec.eos_id]
    assert "help me plan a trip?" in codec.decode(nll) and codec.decode(nll).endswith(record["good"])  # all but the first token
