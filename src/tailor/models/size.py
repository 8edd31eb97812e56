"""Compute-optimal sizing of a scratch transformer for a time budget, measured on this machine."""

from __future__ import annotations

import sys
import time

import torch

from tailor.device import pick_device
from tailor.errors import TailorError
from tailor.models.transformer import Transformer, TransformerConfig
from tailor.spec.problem import Constraints

SAFETY = 0.9  # share of a time budget that plans may fill; the rest absorbs noise and checkpoints

# Scratch transformer shapes (n_layer, n_head, n_embd), smallest first, for compute-optimal sizing.
SHAPES = ((2, 2, 64), (2, 4, 128), (4, 4, 128), (4, 4, 192), (6, 6, 256), (6, 6, 384), (8, 8, 512),
          (12, 12, 768), (24, 16, 1024))
TOKENS_PER_PARAM = 20  # Chinchilla (Hoffmann et al. 2022): compute-optimal training sees ~20 tokens per parameter


def shape_params(n_layer: int, n_embd: int) -> int:
    """Non-embedding parameters of a GPT-2-style block stack (12 * L * C^2, as Kaplan et al. count)."""
    return 12 * n_layer * n_embd ** 2


def compute_optimal_shape(flops_per_s: float, budget: float, memory_limit: int | None = None) -> tuple[tuple, str]:
    """The largest shape whose compute-optimal training (6 N D FLOPs, D = 20 N) fits the budget."""
    compute = flops_per_s * budget * SAFETY
    n_opt = (compute / (6 * TOKENS_PER_PARAM)) ** 0.5
    fits = [s for s in SHAPES if shape_params(s[0], s[2]) <= n_opt
            and (memory_limit is None or shape_params(s[0], s[2]) * 16 <= memory_limit)]
    chosen = fits[-1] if fits else SHAPES[0]
    n = shape_params(chosen[0], chosen[2])
    reason = (f"{chosen[0]} layers x {chosen[2]} wide ({n / 1e6:.2f}M non-embedding parameters): "
              f"{budget:.0f}s at a measured {flops_per_s / 1e9:.1f} GFLOP/s gives {compute:.2e} FLOPs, "
              f"compute-optimal for {n_opt / 1e6:.2f}M parameters on {TOKENS_PER_PARAM * n_opt / 1e6:.1f}M tokens")
    return chosen, reason


def measure_flops(vocab_size: int, block_size: int, device: torch.device, steps: int = 3) -> float:
    """Training FLOP/s this machine reaches on a mid-sized probe transformer (6 N + attention per token)."""
    n_layer, n_embd, batch = 2, 256, 8
    block = min(block_size, 256)
    probe = Transformer(TransformerConfig(vocab_size=vocab_size, block_size=block, n_layer=n_layer, n_head=4,
                                          n_embd=n_embd)).to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    x = torch.randint(0, vocab_size, (batch, block), device=device)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        _, loss = probe(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step:
            times.append(time.perf_counter() - start)
    n = sum(p.numel() for p in probe.parameters()) - probe.wpe.weight.numel()
    per_token = 6 * n + 12 * n_layer * block * n_embd
    return per_token * batch * block / sorted(times)[len(times) // 2]


def plan_scratch_size(vocab_size: int, block_size: int, budget: float | None,
                      constraints: Constraints) -> tuple[tuple[int, int, int], str]:
    """model.arch.size: auto — measure this machine, then pick the compute-optimal shape for `budget` seconds."""
    if budget is None:
        raise TailorError("model.arch.size: auto needs problem.constraints.time_budget (or train.max_time)")
    device = pick_device(constraints.device)
    shape, reason = compute_optimal_shape(measure_flops(vocab_size, block_size, device), budget,
                                          constraints.max_memory)
    print(f"model size: {reason}", file=sys.stderr)
    return shape, reason
