"""Training throughput: our transformer on our engine vs Hugging Face GPT2LMHeadModel on a plain PyTorch loop.

Both start from the same weights (ours is copied from the HF model) with the same config
(4 layers, 4 heads, 128 wide, context 64, batch 12, dropout 0) and train on the same batches
(char-level tinyshakespeare, batch `step` a function of the step) with AdamW, warmup and
clipping (a constant rate after warmup, since each of our rounds is one call of the loop).
Rounds alternate between the two so that load on the machine hits both alike; the summary line
gives the median tokens/s ratio by wall time and by CPU time of this process (steadier on a
shared machine, where other work takes the cores away from both), and the first-step loss of each.

    python benchmarks/train_scratch.py [--steps 50] [--rounds 9] [--threads 1] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def char_tokens() -> tuple[torch.Tensor, int]:
    text = CORPUS.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    return ids[: int(0.9 * len(ids))], len(chars)


def main() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from tailor.models.transformer import Transformer
    from tailor.spec.train import Train
    from tailor.train.batches import StreamBatches
    from tailor.train.checkpoint import Checkpoints
    from tailor.train.distributed import make_accelerator, prepare_for_training
    from tailor.train.loop import Engine, LoopState, train_loop
    from tailor.train.monitor import Monitor
    from tailor.train.optim import make_optimizer
    from tailor.train.schedule import lr_at

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50, help="optimizer steps per round and side")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (default 1: on a small shared machine more threads spin)")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model (train.compile)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="train.precision for our side (auto: bf16 where the CPU computes it natively)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens, vocab = char_tokens()
    batches = StreamBatches(tokens, block_size=64, batch_size=12, seed=0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=64, n_embd=128, n_layer=4, n_head=4,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).train()
    ours = Transformer.from_gpt2(hf).train()
    total = args.steps * args.rounds
    cfg = Train.model_validate({"max_steps": total, "batch_size": 12, "eval_every": 10**9, "eval_batches": 1,
                                "compile": args.compile, "optimizer": {"lr": 1e-3, "weight_decay": 0.1},
                                "schedule": {"name": "constant", "warmup_steps": 20},
                                "tracking": {"tensorboard": False}, "precision": args.precision})

    first = batches(0)
    with torch.no_grad():
        ours_first = F.cross_entropy(ours(first["input_ids"])[0].view(-1, vocab), first["targets"].view(-1)).item()
        hf_first = F.cross_entropy(hf(input_ids=first["input_ids"]).logits.view(-1, vocab), first["targets"].view(-1)).item()

    acc = make_accelerator(cfg, "cpu")
    opt = make_optimizer(ours, cfg.optimizer)
    model, opt = prepare_for_training(acc, torch.compile(ours) if args.compile else ours, opt)
    engine = Engine(model, ours, opt, acc)
    work = Path(tempfile.mkdtemp(prefix="train-scratch-"))
    monitor = Monitor(work, 0, total, False, None, "", {}, None, print, enabled=False)
    checkpoints = Checkpoints(work / "checkpoints")
    state = LoopState()

    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    hf_step = 0

    def hf_round() -> int:
        nonlocal hf_step
        n = 0
        for _ in range(args.steps):
            for group in hf_opt.param_groups:
                group["lr"] = lr_at(hf_step, 1e-3, total, cfg.schedule)  # constant after warmup, as ours
            b = batches(hf_step)
            logits = hf(input_ids=b["input_ids"]).logits
            loss = F.cross_entropy(logits.view(-1, vocab), b["targets"].view(-1))
            hf_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
            hf_opt.step()
            n += b["input_ids"].numel()
            hf_step += 1
        return n

    class Validation:  # off (eval_every is huge) but for the one pass at each round's end
        @staticmethod
        def eval_batches(limit):
            yield batches(0)

    def ours_round(r: int) -> int:
        before = state.tokens
        train_loop(engine, batches, Validation, cfg, (r + 1) * args.steps, checkpoints, monitor, state)
        return state.tokens - before

    def timed(fn, *a) -> tuple[float, float]:
        """(tokens per wall second, tokens per CPU second of this process)."""
        wall, cpu = time.perf_counter(), time.process_time()
        n = fn(*a)
        return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)

    speeds: dict[str, list[float]] = {"ours": [], "hf": [], "ours_cpu": [], "hf_cpu": []}
    ratios, cpu_ratios = [], []
    for r in range(args.rounds):
        o, o_cpu = timed(ours_round, r)
        h, h_cpu = timed(hf_round)
        for key, value in (("ours", o), ("hf", h), ("ours_cpu", o_cpu), ("hf_cpu", h_cpu)):
            speeds[key].append(value)
        ratios.append(o / h)
        cpu_ratios.append(o_cpu / h_cpu)
        print(f"round {r + 1}: ours {o:,.0f} tok/s ({o_cpu:,.0f} per CPU-s)  HF GPT2 {h:,.0f} tok/s "
              f"({h_cpu:,.0f} per CPU-s)  ratio {o / h:.2f} (CPU {o_cpu / h_cpu:.2f})", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in speeds.items()}
    print(f"train_scratch: ours {med['ours']:,.0f} tok/s vs HF GPT2LMHeadModel {med['hf']:,.0f} tok/s: ratio "
          f"{statistics.median(ratios):.2f} by wall time, {statistics.median(cpu_ratios):.2f} by CPU time "
          f"({med['ours_cpu']:,.0f} vs {med['hf_cpu']:,.0f} tokens per CPU-second); medians of {args.rounds} "
          f"alternating rounds x {args.steps} steps, {torch.get_num_threads()} thread(s), ours in "
          f"{'bf16 autocast' if acc.mixed_precision == 'bf16' else 'fp32'}, HF in fp32"
          f"{', compiled' if args.compile else ''}; first-step loss ours {ours_first:.5f} HF {hf_first:.5f} "
          f"|diff| {abs(ours_first - hf_first):.1e}")


if __name__ == "__main__":
    main()
