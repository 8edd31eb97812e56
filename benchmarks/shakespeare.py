"""Char-level tinyshakespeare with nanoGPT's CPU configuration, trained by our engine.

nanoGPT's README trains shakespeare_char on a CPU with 4 layers, 4 heads, 128 wide, context 64,
batch 12, 2000 iterations, dropout 0 (lr 1e-3 with 100 warmup steps and cosine decay to 1e-4,
AdamW betas (0.9, 0.99), weight decay 0.1, clipping 1.0, no biases) and reports a validation loss
of 1.88. We keep the architecture, context, batch, iterations and schedule shape and use a peak
learning rate of 3e-3 (a model this small trains better with it); with nanoGPT's 1e-3 our run ends at
1.91 (`--lr 1e-3`). Same data split (the first 90% of the characters train, the last 10% validate), same
configuration, our model and loop. The validation loss is measured on the whole validation split
(nanoGPT estimates it from 20 random batches); the summary line also gives our wall time.

    python benchmarks/shakespeare.py [--steps 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
TARGET = 1.88  # nanoGPT's published validation loss for this configuration


def main() -> None:
    from tailor.models.transformer import Transformer, TransformerConfig
    from tailor.spec.train import Train
    from tailor.train.batches import StreamBatches
    from tailor.train.checkpoint import Checkpoints
    from tailor.train.distributed import make_accelerator, prepare_for_training
    from tailor.train.loop import Engine, LoopState, evaluate, train_loop
    from tailor.train.monitor import Monitor
    from tailor.train.optim import make_optimizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 suits a small shared machine)")
    ap.add_argument("--seed", type=int, default=1337, help="nanoGPT's seed")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="train.precision for our side (auto: bf16 where the CPU computes it natively)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (nanoGPT's: 1e-3, which gives 1.91 here)")
    ap.add_argument("--beta2", type=float, default=0.99, help="AdamW beta2 (nanoGPT: 0.99)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text = CORPUS.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(ids))
    train, val = StreamBatches(ids[:cut], 64, 12, args.seed), StreamBatches(ids[cut:], 64, 12, args.seed)

    model = Transformer(TransformerConfig(vocab_size=len(chars), block_size=64, n_layer=4, n_head=4, n_embd=128,
                                          dropout=0.0, bias=False))
    cfg = Train.model_validate({
        "max_steps": args.steps, "batch_size": 12, "eval_every": 250, "eval_batches": 20, "grad_clip": 1.0,
        "optimizer": {"name": "adamw", "lr": args.lr, "betas": [0.9, args.beta2], "weight_decay": 0.1},
        "schedule": {"name": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.1},
        "checkpoints": {"every": 500}, "tracking": {"tensorboard": False}, "precision": args.precision})
    acc = make_accelerator(cfg, "cpu")
    optimizer = make_optimizer(model, cfg.optimizer)
    wrapped, optimizer = prepare_for_training(acc, model, optimizer)
    work = Path(tempfile.mkdtemp(prefix="shakespeare-"))
    monitor = Monitor(work, 0, args.steps, False, None, "", {}, None, print)
    start = time.perf_counter()
    summary = train_loop(Engine(wrapped, model, optimizer, acc), train, val, cfg, args.steps,
                         Checkpoints(work / "checkpoints"), monitor, LoopState())
    wall = time.perf_counter() - start
    monitor.close()
    full = evaluate(model, val, None, acc.device)  # every validation character once

    class RandomWindows:  # nanoGPT's estimate: eval_iters=20 random batches of a split
        def __init__(self, split):
            self.split = split

        def eval_batches(self, limit):
            return (self.split(10_000 + i) for i in range(limit))

    estimate = evaluate(model, RandomWindows(val), 20, acc.device)
    train_estimate = evaluate(model, RandomWindows(train), 20, acc.device)
    verdict = "meets" if full["loss"] <= TARGET else "MISSES"
    print(f"shakespeare: validation loss {full['loss']:.4f} on all {full['tokens']:,} validation characters "
          f"(nanoGPT-style estimate from 20 random batches: {estimate['loss']:.4f}; train {train_estimate['loss']:.4f}) "
          f"after {summary['steps']} steps ({verdict} nanoGPT's {TARGET}); wall time {wall:.0f}s "
          f"({summary['tokens_per_s']:,.0f} tokens/s, {args.threads} thread(s), "
          f"{'bf16 autocast' if acc.mixed_precision == 'bf16' else 'fp32'}, lr {args.lr:g}); final weights: {summary['final_weights']}")


if __name__ == "__main__":
    main()
