"""Encoder-decoder bases (T5, BART): detected from their config, trained on the answer, evaluated and exported."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import copy_pairs
from tailor.errors import TailorError
from tailor.models.pretrained import head_from_config, load_pretrained
from tailor.run import Pipeline
from tailor.spec import load_spec


def copy_spec(tmp_path: Path, base: str, train: dict | None = None, lora: dict | None = None, rows: int = 60) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in copy_pairs(rows)))
    spec = {"name": "seq2seq-copy",
            "problem": {"domain": "tests", "task": "reverse the words", "output": "text",
                        "targets": [{"metric": "exact_match", "split": "test", "at_least": 0.0}]},
            "data": {"sources": [{"type": "files", "path": "data/pairs.jsonl"}],
                     "fields": {"input": "question", "output": "answer"}, "clean": [],
                     "split": {"train": 0.8, "validation": 0.1, "test": 0.1, "seed": 0}},
            "tokenizer": {"type": "pretrained"},
            "model": {"base": base, **({"adapt": {"lora": lora}} if lora else {})},
            "train": {"batch_size": 8, "max_steps": 40, "eval_every": 20, "eval_batches": 1,
                      "optimizer": {"lr": 3e-3}, "schedule": {"name": "constant", "warmup_steps": 0}, **(train or {})},
            "evaluate": {"generation": {"max_new_tokens": 8}, "metrics": ["exact_match", "rougeL", "loss"]}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def train_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def test_head_from_config_reads_encoder_decoders():
    assert head_from_config({"architectures": ["T5ForConditionalGeneration"], "is_encoder_decoder": True}) == "seq2seq_lm"
    assert head_from_config({"architectures": ["BartForConditionalGeneration"], "is_encoder_decoder": True}) \
        == "seq2seq_lm"
    assert head_from_config({"architectures": ["LlamaForCausalLM"]}) == "causal_lm"


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_seq2seq_base_loads_with_its_decoder_and_scores_the_answer(kind, tiny_t5_dir, tiny_bart_dir):
    """The loss is the answer's cross-entropy given the input: the same number transformers computes from labels."""
    from tailor.models import compute_loss, is_seq2seq
    from tailor.tokenizer import Codec
    from tailor.train.seq2seq_batches import collate_seq2seq, encode_seq2seq

    folder = tiny_t5_dir if kind == "t5" else tiny_bart_dir
    model = load_pretrained(str(folder), "causal_lm")
    assert is_seq2seq(model) and model.config.is_encoder_decoder
    codec = Codec.load(folder)
    rows = copy_pairs(6)
    examples = encode_seq2seq([r["question"] for r in rows], [r["answer"] for r in rows], codec, 64)
    assert examples[0][0] == codec.prompt(rows[0]["question"])  # the encoder reads what the server will send
    assert examples[0][1] == codec.encode(rows[0]["answer"]) + [codec.eos_id]
    batch = collate_seq2seq(examples, codec.pad_id)
    _, loss, n = compute_loss(model, batch)
    reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert n == sum(len(b) for _, b in examples)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_seq2seq_refuses_what_it_cannot_learn(tiny_t5_dir):
    from tailor.spec.data import Fields
    from tailor.tokenizer import Codec
    from tailor.train.batches import make_batches

    codec = Codec.load(tiny_t5_dir)
    rows = copy_pairs(4)
    with pytest.raises(TailorError, match="train.packing"):
        make_batches(rows, codec, 64, 2, 0, fields=Fields(input="question", output="answer"), output="text",
                     packing=True, seq2seq=True)
    with pytest.raises(TailorError, match="data.fields.text: an encoder-decoder"):
        make_batches([{"text": "a b"}], codec, 64, 2, 0, fields=Fields(text="text"), output="text", seq2seq=True)


BART_LINEAR = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


# LoRA with peft's own targets for T5 (q, v) and with named ones for BART; a full fine-tune of T5
@pytest.mark.parametrize("kind,lora", [("t5", None), ("bart", {"r": 8, "alpha": 16, "target_modules": BART_LINEAR}),
                                       ("t5", {"r": 8, "alpha": 16})])
def test_seq2seq_pipeline_learns_the_copy_task_and_answers(kind, lora, tmp_path, tiny_t5_dir, tiny_bart_dir, one_thread):
    """data -> tokenizer -> model -> train -> evaluate -> report: the loss goes down, evaluation answers by generating."""
    from transformers import AutoModelForSeq2SeqLM

    folder = tiny_t5_dir if kind == "t5" else tiny_bart_dir
    train = {"max_steps": 60, "optimizer": {"lr": 1e-2}} if lora else {}
    run_dir = Pipeline(load_spec(copy_spec(tmp_path, str(folder), train, lora)), tmp_path / "runs").run()
    losses = train_losses(run_dir)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    model_dir = run_dir / "train" / "model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["tailor_head"] == "seq2seq_lm" and config["is_encoder_decoder"]
    model = AutoModelForSeq2SeqLM.from_pretrained(str(model_dir))  # merged: a plain transformers model
    assert not any("lora" in name for name, _ in model.named_parameters())
    summary = json.loads((run_dir / "train" / "summary.json").read_text())
    assert summary["adapt"]["lora"] == bool(lora)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test/exact_match", "test/rougeL", "test/loss"} <= set(metrics)
    assert metrics["test/loss"] < losses[0]
    import pyarrow.parquet as pq

    rows = pq.read_table(run_dir / "evaluate" / "predictions.parquet").to_pylist()
    answered = [r for r in rows if r["split"] == "test"]
    assert answered and all(r["predicted"] is not None and r["tokens"] > 0 for r in answered)


def test_chat_data_on_an_encoder_decoder_is_refused_at_the_model_stage(tmp_path, tiny_t5_dir):
    rows = [{"conversations": [{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]}
            for r in copy_pairs(20)]
    path = copy_spec(tmp_path, str(tiny_t5_dir))
    (tmp_path / "data" / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = yaml.safe_load(path.read_text())
    spec["data"]["fields"] = {"messages": "conversations"}
    spec["problem"]["targets"] = []
    spec["evaluate"]["metrics"] = ["loss"]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(TailorError, match="data.fields.messages: an encoder-decoder model.base"):
        Pipeline(load_spec(path), tmp_path / "runs").run(until="model")
