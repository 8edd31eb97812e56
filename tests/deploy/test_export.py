"""Exports: the HF folder (greedy output token-identical to transformers generate()), ONNX parity, int8."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tailor.cli import app as cli
from tailor.inference.backends import HFBackend, TailorBackend
from tailor.inference.engine import Engine, GenRequest
from tailor.errors import TailorError

from .conftest import make_model_folder

PROMPTS = ["what colour is item 5", "x", "tell me the colour of item 11 please", "item 3 colour?"]
LLAMA = {"positions": "rope", "norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 2, "bias": False}


def engine_outputs(backend, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """Decode all prompts together through the batching engine."""
    done = threading.Semaphore(0)
    engine = Engine(backend, max_batch=8)
    requests = [GenRequest(ids, max_new, lambda kind, v: done.release() if kind in ("done", "error") else None)
                for ids in prompts]
    for r in requests:
        assert engine.submit(r) == "ok"
    for _ in requests:
        assert done.acquire(timeout=60)
    engine.drain(5)
    return [r.out for r in requests]


@pytest.mark.parametrize("arch", [{}, LLAMA], ids=["gpt2", "llama"])
def test_hf_export_generates_exactly_what_the_server_generates(finished_run, tmp_path, arch):
    from transformers import AutoModelForCausalLM

    _, run_dir = finished_run
    folder = make_model_folder(tmp_path / "m", run_dir / "train" / "model", **arch)
    res = CliRunner().invoke(cli, ["export", str(folder), "--format", "hf", "--out", str(tmp_path / "hf")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["architecture"] == ("LlamaForCausalLM" if arch else "GPT2LMHeadModel")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", use_safetensors=True).eval()
    ours = TailorBackend(folder)
    prompts = [ours.format.encode_prompt(p) for p in PROMPTS]
    served = engine_outputs(ours, prompts, 24)
    for ids, out in zip(prompts, served):
        reference = hf.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=24, do_sample=False)[0, len(ids):].tolist()
        assert out == reference
    # the exported folder plugs into the same engine through the transformers backend, batched
    assert engine_outputs(HFBackend(tmp_path / "hf"), prompts, 24) == served


def test_hf_export_refuses_settings_transformers_has_no_model_for(finished_run, tmp_path):
    from tailor.deploy.export import run_export

    _, run_dir = finished_run
    folder = make_model_folder(tmp_path / "m", run_dir / "train" / "model", positions="rope")
    with pytest.raises(TailorError, match="no Hugging Face equivalent"):
        run_export(folder, "hf", tmp_path / "out")
    with pytest.raises(TailorError, match="expected one of"):
        run_export(folder, "tflite", tmp_path / "out")


@pytest.mark.parametrize("arch", [{}, LLAMA], ids=["gpt2", "llama"])
def test_onnx_logits_match_pytorch_for_padded_batches(finished_run, tmp_path, arch):
    from tailor.deploy.export import run_export
    from tailor.deploy.onnx_export import onnx_logits
    from tailor.models import load_model

    _, run_dir = finished_run
    folder = make_model_folder(tmp_path / "m", run_dir / "train" / "model", **arch)
    run_export(folder, "onnx", tmp_path / "onnx")
    model = load_model(folder).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :7] = 0  # left padding
    got = onnx_logits(tmp_path / "onnx" / "model.onnx", ids.numpy(), mask.numpy())
    with torch.no_grad():
        full = model(ids)[0].numpy()
        short = model(ids[1:2, 7:])[0].numpy()
    assert np.abs(got[[0, 2]] - full[[0, 2]]).max() < 1e-3
    assert np.abs(got[1, 7:] - short[0]).max() < 1e-3


def test_int8_export_reports_the_accuracy_change_on_held_out_data(finished_run, tmp_path):
    from tailor.deploy.export import run_export

    _, run_dir = finished_run
    report = run_export(run_dir, "onnx-int8", tmp_path / "int8")
    int8 = report["int8"]
    assert (tmp_path / "int8" / "model.int8.onnx").stat().st_size < (tmp_path / "int8" / "model.onnx").stat().st_size
    assert "held_out" not in report  # measured on the run's own test split
    assert int8["float32"]["max_abs_logit_diff"] < 1e-3 and int8["float32"]["top1_agreement_with_pytorch"] == 1.0
    assert abs(int8["int8_loss_change"] - (int8["int8"]["loss"] - int8["float32"]["loss"])) < 1e-9
    assert 0.5 < int8["int8"]["top1_agreement_with_pytorch"] <= 1.0


def test_gguf_export_loads_back_through_transformers_with_the_same_logits(finished_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailor.deploy.export import run_export
    from tailor.models import load_model
    from tailor.tokenizer import Codec

    _, run_dir = finished_run
    folder = make_model_folder(tmp_path / "m", run_dir / "train" / "model", **LLAMA)
    model = load_model(folder).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(ids)[0]
    run_export(folder, "hf", tmp_path / "hf")  # a transformers Llama folder (as a merged SmolLM2 would be) too
    for source, out in ((folder, tmp_path / "gguf"), (tmp_path / "hf", tmp_path / "gguf-from-hf")):
        report = run_export(source, "gguf", out)
        assert report["format"] == "gguf"
        back = AutoModelForCausalLM.from_pretrained(out, gguf_file="model.gguf").eval()
        with torch.no_grad():
            assert (back(ids).logits - expected).abs().max() < 1e-4
    tok = AutoTokenizer.from_pretrained(tmp_path / "gguf", gguf_file="model.gguf")
    text = "tell me the colour of item 11, héllo"
    assert tok(text, add_special_tokens=False)["input_ids"] == Codec.load(folder).encode(text)
    gpt2_shaped = make_model_folder(tmp_path / "g", run_dir / "train" / "model")
    with pytest.raises(TailorError, match="Llama-family"):
        run_export(gpt2_shaped, "gguf", tmp_path / "no")


@pytest.fixture(scope="module")
def smollm2_folder(tmp_path_factory):
    """SmolLM2-135M-Instruct (the preset's GGUF, dequantized) saved as a plain transformers folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tailor.presets import resolve_source

    source, gguf = resolve_source("smollm2-135m")
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, dtype=torch.float32)
    config = loaded.config
    del config.quantization_config  # the weights are plain float32 once dequantized
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    folder = tmp_path_factory.mktemp("smollm2") / "smollm2"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source, gguf_file=gguf).save_pretrained(folder)
    return folder


def test_smollm2_chat_through_the_engine_equals_transformers_generate(smollm2_folder):
    backend = HFBackend(smollm2_folder)
    chats = [[{"role": "user", "content": "What is the capital of France?"}],
             [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]]
    prompts = [backend.format.encode_chat(c) for c in chats]
    assert backend.format.tokenizer.decode(prompts[0]).startswith("<|im_start|>")  # the model's own chat template
    served = engine_outputs(backend, prompts, 8)
    for ids, out in zip(prompts, served):
        reference = backend.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                           max_new_tokens=8, do_sample=False)[0, len(ids):].tolist()
        assert out == reference
    assert "Paris" in backend.format.decode(served[0])


def test_recurrent_onnx_logits_match_pytorch_for_right_padded_batches(finished_run, tmp_path):
    from tailor.deploy.export import run_export
    from tailor.deploy.onnx_export import onnx_logits
    from tailor.models import load_model

    _, run_dir = finished_run
    folder = make_model_folder(tmp_path / "m", run_dir / "train" / "model", family="gru")
    run_export(folder, "onnx", tmp_path / "onnx")
    model = load_model(folder).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 13), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding: it comes after every real token, so it changes none of their logits
    got = onnx_logits(tmp_path / "onnx" / "model.onnx", ids.numpy(), mask.numpy())
    with torch.no_grad():
        full, short = model(ids)[0].numpy(), model(ids[1:, :9])[0].numpy()
    assert np.abs(got[0] - full[0]).max() < 1e-4 and np.abs(got[1, :9] - short[0]).max() < 1e-4
