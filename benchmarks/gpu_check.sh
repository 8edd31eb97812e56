#!/usr/bin/env bash
# Model FLOPs utilisation of a GPT-2-124M-shaped bf16 training run on one GPU (H100/H200), through
# our engine (train_loop, bf16 autocast, fused AdamW, torch.compile). Run from the repository root
# on a machine with a GPU:  bash benchmarks/gpu_check.sh [steps] [micro-batch]   (defaults 50 and 64)
# MFU = achieved FLOP/s / peak dense bf16 FLOP/s, with training FLOPs per token as in PaLM
# (appendix B): 6 * N (non-embedding parameters, plus the tied output layer) + 12 * L * T * C.
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
