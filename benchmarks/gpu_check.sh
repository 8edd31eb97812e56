#!/usr/bin/env bash
# Model FLOPs utilisation of a GPT-2-124M-shaped bf16 training run on one GPU (H100/H200), through
# our engine (train_loop, bf16 autocast, fused AdamW, torch.compile). Run from the repository root
# on a machine with a GPU:  bash benchmarks/gpu_check.sh [steps] [micro-batch]   (defaults 50 and 64)
# MFU = achieved FLOP/s / peak dense bf16 FLOP/s, with training FLOPs per token as in PaLM
# (appendix B): 6 * N (non-embedding parameters, plus the tied output layer) + 12 * L * T * C.
# Then QLoRA against LoRA in bf16 (QSTEPS, QMICRO: defaults 30 and 8): peak memory and tokens/s; see below.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
STEPS="${1:-50}" MICRO="${2:-64}" "$PY" - <<'EOF'
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tailor.models.transformer import Transformer, TransformerConfig
from tailor.spec.train import Train
from tailor.train.checkpoint import Checkpoints
from tailor.train.distributed import make_accelerator, prepare_for_training
from tailor.train.loop import Engine, LoopState, train_loop
from tailor.train.monitor import Monitor
from tailor.train.optim import make_optimizer

assert torch.cuda.is_available(), "gpu_check needs a CUDA GPU"
steps, micro = int(os.environ["STEPS"]), int(os.environ["MICRO"])
name = torch.cuda.get_device_name()
PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 tensor-core FLOP/s (SXM)
peak = next((v for k, v in PEAK.items() if k in name), None)
torch.backends.cuda.matmul.allow_tf32 = True
cfg_model = TransformerConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0)
model = Transformer(cfg_model)
corpus = Path("../shared/data/tinyshakespeare.txt")
data = torch.frombuffer(bytearray(corpus.read_bytes()), dtype=torch.uint8).long() if corpus.is_file() \
    else torch.randint(0, 50257, (2_000_000,))

def batches(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    starts = torch.randint(len(data) - 1025, (micro,), generator=g).tolist()
    x = torch.stack([data[s:s + 1024] for s in starts])
    y = torch.stack([data[s + 1:s + 1025] for s in starts])
    return {"input_ids": x.pin_memory(), "targets": y.pin_memory()}

class NoValidation:
    @staticmethod
    def eval_batches(limit):
        yield batches(0)

cfg = Train.model_validate({"max_steps": steps, "batch_size": micro, "eval_every": 10**9, "eval_batches": 1,
                            "precision": "bf16", "compile": True, "deterministic": False,
                            "optimizer": {"lr": 6e-4, "betas": [0.9, 0.95]}, "schedule": {"warmup_steps": 10},
                            "checkpoints": {"every": 10**9}, "tracking": {"tensorboard": False}})
acc = make_accelerator(cfg, "cuda")
model = model.to(acc.device)
opt = make_optimizer(model, cfg.optimizer)
wrapped, opt = prepare_for_training(acc, torch.compile(model), opt)
engine = Engine(wrapped, model, opt, acc)
work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
monitor = Monitor(work, 0, steps, False, None, "", {}, None, print)  # metrics.jsonl: tokens/s of every step
warm = 10  # compilation and autotuning happen in these steps
train_loop(engine, batches, NoValidation, cfg, steps, Checkpoints(work / "ck"), monitor, LoopState())
monitor.close()
rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
speed = statistics.median(r["tokens_per_s"] for r in rows if r["split"] == "train" and r["step"] > warm)
n_params = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()  # tied lm_head counted once
flops_per_token = 6 * n_params + 12 * cfg_model.n_layer * cfg_model.block_size * cfg_model.n_embd
achieved = flops_per_token * speed
mfu = f"{100 * achieved / peak:.1f}%" if peak else "unknown peak"
print(f"gpu_check: MFU {mfu} on {name} ({speed:,.0f} tokens/s (median step), {achieved / 1e12:.1f} TFLOP/s bf16, "
      f"GPT-2-124M shape, batch {micro} x 1024, {steps - warm} timed steps, peak memory "
      f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB; goal >= 40%)")
EOF

# QLoRA against LoRA in bf16: the same adapters (r 16 on every attention and MLP projection) trained on a
# Llama-shaped base of 1.1B parameters (TinyLlama's shape, random weights: no download), through Tailor's own
# loaders (tailor.models.pretrained.load_quantized for the 4-bit NF4 base) and loop; peak GPU memory and
# tokens/s of each. Needs bitsandbytes (pip install bitsandbytes); says so and skips where it is missing.
QSTEPS="${QSTEPS:-30}" QMICRO="${QMICRO:-8}" "$PY" - <<'EOF'
import importlib.util
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch

from tailor.models.adapt import apply_lora, check_quantized
from tailor.models.pretrained import load_quantized, mark
from tailor.spec.model import Lora
from tailor.spec.train import Train
from tailor.train.checkpoint import Checkpoints
from tailor.train.distributed import make_accelerator, prepare_for_training
from tailor.train.loop import Engine, LoopState, train_loop
from tailor.train.monitor import Monitor
from tailor.train.optim import make_optimizer

if importlib.util.find_spec("bitsandbytes") is None:
    print("gpu_check qlora: skipped: bitsandbytes is not installed (pip install bitsandbytes)")
    raise SystemExit(0)
from transformers import LlamaConfig, LlamaForCausalLM

steps, micro, T = int(os.environ["QSTEPS"]), int(os.environ["QMICRO"]), 1024
root = Path(tempfile.mkdtemp(prefix="gpu-check-qlora-"))
config = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                     num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048)
torch.manual_seed(0)
LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(root / "base")  # what the model stage would write
lora = Lora(r=16, alpha=32, dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
data = torch.randint(0, config.vocab_size, (4_000_000,))

def batches(step: int) -> dict:
    g = torch.Generator().manual_seed(step)
    starts = torch.randint(len(data) - T - 1, (micro,), generator=g).tolist()
    return {"input_ids": torch.stack([data[s:s + T] for s in starts]),
            "targets": torch.stack([data[s + 1:s + T + 1] for s in starts])}

class NoValidation:
    @staticmethod
    def eval_batches(limit):
        yield batches(0)

def measure(kind: str) -> tuple[float, float]:
    """(median tokens/s after warm-up, peak GiB) of `steps` LoRA steps over the bf16 or the NF4 base."""
    cfg = Train.model_validate({"max_steps": steps, "batch_size": micro, "eval_every": 10**9, "eval_batches": 1,
                                "precision": "bf16", "deterministic": False, "optimizer": {"lr": 2e-4},
                                "schedule": {"warmup_steps": 2}, "checkpoints": {"every": 10**9},
                                "tracking": {"tensorboard": False}})
    acc = make_accelerator(cfg, "cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    if kind == "qlora":
        spec = lora.model_copy(update={"quantize": "nf4"})
        check_quantized(spec, acc.device)
        model = load_quantized(root / "base", acc.device)
    else:
        model = mark(LlamaForCausalLM.from_pretrained(root / "base", dtype=torch.bfloat16), "causal_lm", None)
        model = model.to(acc.device)
        model.gradient_checkpointing_enable()  # as load_quantized sets it: the two sides differ in the base only
        model.enable_input_require_grads()
    model = apply_lora(model, lora)
    opt = make_optimizer(model, cfg.optimizer)
    wrapped, opt = prepare_for_training(acc, model, opt)
    work = root / kind
    work.mkdir()
    monitor = Monitor(work, 0, steps, False, None, "", {}, None, print)
    train_loop(Engine(wrapped, model, opt, acc), batches, NoValidation, cfg, steps, Checkpoints(work / "ck"), monitor,
               LoopState())
    monitor.close()
    rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    speed = statistics.median(r["tokens_per_s"] for r in rows if r["split"] == "train" and r["step"] > 5)
    peak = torch.cuda.max_memory_allocated() / 2**30
    del wrapped, model, opt
    return speed, peak

lora_speed, lora_mem = measure("lora")
q_speed, q_mem = measure("qlora")
print(f"gpu_check qlora: QLoRA (NF4 base) {q_mem:.1f} GiB peak, {q_speed:,.0f} tokens/s; LoRA (bf16 base) "
      f"{lora_mem:.1f} GiB, {lora_speed:,.0f} tokens/s: memory x{q_mem / lora_mem:.2f}, speed x{q_speed / lora_speed:.2f} "
      f"(1.1B Llama shape, batch {micro} x {T}, {steps} steps, activation checkpointing on both sides, as PEFT's "
      "prepare_model_for_kbit_training sets it for QLoRA)")
EOF
