"""Training throughput: our transformer on our engine vs Hugging Face GPT2LMHeadModel on a plain PyTorch loop.

Both start from the same weights (ours is copied from the HF model) with the same config
(4 layers, 4 heads, 128 wide, context 64, batch 12, dropout 0) and train on the same batches
(char-level tinyshakespeare, batch `step` a function of the step) with the same optimizer: torch's
fused AdamW (`--no-fused`: the for-each one, on both sides) over the same parameter groups (decay on
matrices only), the same warmup and clipping (a constant rate after warmup, since each of our
rounds is one call of the loop). The headline is fp32 on both sides. Rounds alternate the sides
so that load on the machine hits them alike; the line gives the median tokens/s ratio by wall time
and by CPU time of this process (steadier on a shared machine, where other work takes the cores
away from both), the first-step loss of each, and model FLOPs utilisation of both against this
machine's fp32 matmul peak, measured in the same run (the best CPU time of `torch.mm` calls of two
2048x2048 fp32 matrices before each round, on the same threads; MFU is per CPU-second on both sides).

A second, labelled line gives ours at `train.precision: auto` (bf16 autocast where this CPU computes
bf16 natively, our default) against the same fp32 HF rounds: that gain is the precision's, not the loop's.

    python benchmarks/train_scratch.py [--steps 50] [--rounds 9] [--threads 1] [--compile] [--no-fused]
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
BLOCK, BATCH = 64, 12


def char_tokens() -> tuple[torch.Tensor, int]:
    text = CORPUS.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    return ids[: int(0.9 * len(ids))], len(chars)


def matmul_peak(n: int = 2048, tries: int = 3) -> float:
    """This machine's fp32 matmul rate (FLOP per CPU-second) on the current threads: the best of `tries` torch.mm.

    CPU time, like the tokens per CPU-second it is compared with: on a shared machine wall time would
    also count the neighbours' share of the cores.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(tries):
        start = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - start)
    return 2 * n**3 / best


def flops_per_token(model: torch.nn.Module, n_layer: int, n_embd: int) -> float:
    """Training FLOPs per token, as nanoGPT and PaLM count them: 6 per weight (position table excluded)
    plus attention's 12 * layers * width * context."""
    weights = sum(p.numel() for name, p in model.named_parameters() if "wpe" not in name)
    return 6 * weights + 12 * n_layer * n_embd * BLOCK


def config(args: argparse.Namespace, precision: str):
    """The training settings of every side: constant rate 1e-3 after 20 warmup steps, clipping at 1.0."""
    from tailor.spec.train import Train

    return Train.model_validate({"max_steps": args.steps * args.rounds, "batch_size": BATCH, "eval_every": 10**9,
                                 "eval_batches": 1, "compile": args.compile,
                                 "optimizer": {"lr": 1e-3, "weight_decay": 0.1},
                                 "schedule": {"name": "constant", "warmup_steps": 20},
                                 "tracking": {"tensorboard": False}, "precision": precision})


def adamw(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """The same optimizer for both sides: our make_optimizer's groups, fused (or for-each) AdamW on both."""
    from tailor.train.optim import decay_groups

    return torch.optim.AdamW(decay_groups(model, 0.1), lr=1e-3, betas=config(args, "fp32").optimizer.betas,
                             fused=None if args.no_fused else True, foreach=True if args.no_fused else None)


def ours_side(hf: torch.nn.Module, batches, args: argparse.Namespace, precision: str):
    """One of our runs on its own copy of the weights: (a function that trains a round and returns its tokens,
    the model, accelerate's mixed precision)."""
    from tailor.models.transformer import Transformer
    from tailor.train.checkpoint import Checkpoints
    from tailor.train.distributed import make_accelerator, prepare_for_training
    from tailor.train.loop import Engine, LoopState, train_loop
    from tailor.train.monitor import Monitor

    class Validation:  # off (eval_every is huge) but for the one pass at each round's end
        @staticmethod
        def eval_batches(limit):
            yield batches(0)

    model = Transformer.from_gpt2(hf).train()
    cfg = config(args, precision)
    acc = make_accelerator(cfg, "cpu")
    wrapped, opt = prepare_for_training(acc, torch.compile(model) if args.compile else model, adamw(model, args))
    engine = Engine(wrapped, model, opt, acc)
    work = Path(tempfile.mkdtemp(prefix="train-scratch-"))
    monitor = Monitor(work, 0, cfg.max_steps, False, None, "", {}, None, print, enabled=False)
    checkpoints, state, rounds = Checkpoints(work / "checkpoints"), LoopState(), [0]

    def one_round() -> int:
        before = state.tokens
        rounds[0] += 1
        train_loop(engine, batches, Validation, cfg, rounds[0] * args.steps, checkpoints, monitor, state)
        return state.tokens - before
    return one_round, model, acc.mixed_precision


def hf_side(hf: torch.nn.Module, batches, args: argparse.Namespace, vocab: int):
    """The plain PyTorch loop over the HF model: a function that trains a round and returns its tokens."""
    from tailor.train.schedule import lr_at

    opt, cfg, step = adamw(hf, args), config(args, "fp32"), [0]

    def one_round() -> int:
        n = 0
        for _ in range(args.steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step[0], 1e-3, cfg.max_steps, cfg.schedule)  # constant after warmup, as ours
            b = batches(step[0])
            logits = hf(input_ids=b["input_ids"]).logits
            loss = F.cross_entropy(logits.view(-1, vocab), b["targets"].view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
            opt.step()
            n += b["input_ids"].numel()
            step[0] += 1
        return n
    return one_round


def timed(fn) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of this process) of one round."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = fn()
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from tailor.train.batches import StreamBatches

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50, help="optimizer steps per round and side")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both sides (default 1: on a small shared machine more threads spin)")
    ap.add_argument("--compile", action="store_true", help="torch.compile our model (train.compile)")
    ap.add_argument("--no-fused", action="store_true", help="the for-each AdamW on both sides instead of the fused one")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens, vocab = char_tokens()
    batches = StreamBatches(tokens, block_size=BLOCK, batch_size=BATCH, seed=0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=BLOCK, n_embd=128, n_layer=4, n_head=4,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).train()
    first = batches(0)
    ours_fp32, ours_model, _ = ours_side(hf, batches, args, "fp32")
    ours_auto, _, auto_precision = ours_side(hf, batches, args, "auto")
    with torch.no_grad():
        ours_first = F.cross_entropy(ours_model(first["input_ids"])[0].view(-1, vocab), first["targets"].view(-1)).item()
        hf_first = F.cross_entropy(hf(input_ids=first["input_ids"]).logits.view(-1, vocab), first["targets"].view(-1)).item()

    sides = {"ours": ours_fp32, "hf": hf_side(hf, batches, args, vocab)}
    if auto_precision == "bf16":
        sides["ours_auto"] = ours_auto
    speeds: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    peaks = []
    for r in range(args.rounds):
        peaks.append(matmul_peak())
        for name, fn in sides.items():
            speeds[name].append(timed(fn))
        o, h = speeds["ours"][-1], speeds["hf"][-1]
        print(f"round {r + 1}: ours fp32 {o[0]:,.0f} tok/s ({o[1]:,.0f} per CPU-s)  HF GPT2 fp32 {h[0]:,.0f} tok/s "
              f"({h[1]:,.0f} per CPU-s)  ratio {o[0] / h[0]:.2f} (CPU {o[1] / h[1]:.2f})", file=sys.stderr)
    report(speeds, max(peaks), flops_per_token(ours_model, 4, 128), auto_precision, args, (ours_first, hf_first))


def report(speeds: dict, peak: float, per_token: float, auto_precision: str, args: argparse.Namespace,
           first: tuple[float, float]) -> None:
    """Print the labelled line and the summary line; exit 1 unless the same weights gave the same first loss."""
    def ratio(name: str, i: int) -> float:
        return statistics.median(a[i] / b[i] for a, b in zip(speeds[name], speeds["hf"]))

    med = {k: (statistics.median(v[0] for v in vals), statistics.median(v[1] for v in vals)) for k, vals in speeds.items()}
    mfu = {k: 100 * v[1] * per_token / peak for k, v in med.items()}  # per CPU-second: the cores this process had
    print(f"train_scratch, our own default (train.precision auto = {auto_precision}): "
          + (f"ours bf16 autocast {med['ours_auto'][0]:,.0f} tok/s vs HF fp32: ratio {ratio('ours_auto', 0):.2f} by wall "
             f"time, {ratio('ours_auto', 1):.2f} by CPU time, MFU {mfu['ours_auto']:.1f}% of the fp32 peak; the gain "
             f"over the fp32 line is bf16 arithmetic, which the HF baseline was not given"
             if "ours_auto" in med else "this CPU has no native bf16, so auto is fp32: no second line"), file=sys.stderr)
    print(f"train_scratch: ours {med['ours'][0]:,.0f} tok/s vs HF GPT2LMHeadModel {med['hf'][0]:,.0f} tok/s, both fp32, "
          f"both {'for-each' if args.no_fused else 'fused'} AdamW: ratio {ratio('ours', 0):.2f} by wall time, "
          f"{ratio('ours', 1):.2f} by CPU time ({med['ours'][1]:,.0f} vs {med['hf'][1]:,.0f} tokens per CPU-second); "
          f"MFU ours {mfu['ours']:.1f}% HF {mfu['hf']:.1f}% of this machine's measured fp32 matmul peak "
          f"{peak / 1e9:.1f} GFLOP per CPU-second on {torch.get_num_threads()} thread(s) ({per_token / 1e6:.2f} MFLOP per token); "
          f"medians of {args.rounds} alternating rounds x {args.steps} steps{', compiled' if args.compile else ''}; "
          f"first-step loss ours {first[0]:.5f} HF {first[1]:.5f} |diff| {abs(first[0] - first[1]):.1e}")
    sys.exit(0 if abs(first[0] - first[1]) < 1e-4 else 1)  # the same weights must give the same loss


if __name__ == "__main__":
    main()
