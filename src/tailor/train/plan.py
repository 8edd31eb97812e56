"""Budget-aware planning: measure a few steps, then choose batch size and step count to fit the budget.

Where the spec says `train.batch_size: auto` or `train.max_steps: auto`, each candidate batch size
is timed for a few optimizer steps on a copy of the model (the real one is untouched, so the
planned run is the same run a spec with those numbers would give). The batch size with the best
throughput that fits the memory limit wins (ties go to the smaller batch: more updates for the
same tokens); the step count is what fits the time budget after validation passes.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from tailor.errors import TailorError
from tailor.models.size import SAFETY
from tailor.spec.train import MIN_VALIDATIONS, Train

CANDIDATES = (8, 16, 32, 64, 128)


@dataclass
class Measurement:
    batch_size: int
    seconds_per_step: float
    tokens_per_step: int
    memory_bytes: int  # estimated peak: weights, gradients, optimizer state, saved activations

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.seconds_per_step


@dataclass
class Plan:
    batch_size: int
    max_steps: int
    eval_every: int
    seconds_per_step: float
    eval_seconds: float
    predicted_seconds: float
    budget_seconds: float | None
    memory_limit: int | None
    measured: list[dict]
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def choose_plan(measured: list[Measurement], cfg: Train, budget: float | None, memory_limit: int | None,
                eval_seconds: float) -> Plan:
    """Pick the batch size and step count from measurements (pure: no timing here)."""
    fits = [m for m in measured if memory_limit is None or m.memory_bytes <= memory_limit]
    if not fits:
        smallest = min(measured, key=lambda m: m.memory_bytes)
        raise TailorError(f"problem.constraints.max_memory: even batch size {smallest.batch_size} needs about "
                          f"{smallest.memory_bytes / 2**20:.0f} MiB; raise the limit or use a smaller model")
    top = max(m.tokens_per_s for m in fits)
    chosen = min((m for m in fits if m.tokens_per_s >= 0.95 * top), key=lambda m: m.batch_size)
    if cfg.max_steps != "auto":
        steps, reason = cfg.max_steps, f"batch {chosen.batch_size}: best measured throughput within memory"
    else:
        if budget is None:
            raise TailorError("train.max_steps: auto needs problem.constraints.time_budget (or train.max_time)")
        steps = steps_in_budget(cfg, SAFETY * budget, chosen.seconds_per_step, eval_seconds)
        if steps < 1:
            raise TailorError(f"problem.constraints.time_budget: {budget:.0f}s does not fit one step "
                              f"({chosen.seconds_per_step:.2f}s) and a validation pass ({eval_seconds:.2f}s)")
        reason = (f"{steps} steps of batch {chosen.batch_size} fill {SAFETY:.0%} of the {budget:.0f}s budget "
                  f"at {chosen.tokens_per_s:,.0f} tokens/s")
    every = cfg.eval_interval(steps)
    predicted = steps * chosen.seconds_per_step + (steps // every + 1) * eval_seconds
    return Plan(chosen.batch_size, steps, every, chosen.seconds_per_step, eval_seconds, predicted, budget, memory_limit,
                [asdict(m) | {"tokens_per_s": round(m.tokens_per_s, 1)} for m in measured], reason)


def steps_in_budget(cfg: Train, seconds: float, per_step: float, eval_seconds: float) -> int:
    """The most steps whose training and validation passes fit `seconds` (eval_every: auto follows the count)."""
    if cfg.eval_every != "auto":  # steps * t_step + (steps / eval_every + 1) * t_eval <= seconds
        return int((seconds - eval_seconds) / (per_step + eval_seconds / cfg.eval_every))
    # auto validates every 100 steps in a run of 500 or more, else MIN_VALIDATIONS times in all
    long_run = int((seconds - eval_seconds) / (per_step + eval_seconds / 100))
    if long_run >= 100 * MIN_VALIDATIONS:
        return long_run
    return min(100 * MIN_VALIDATIONS - 1, int((seconds - (MIN_VALIDATIONS + 1) * eval_seconds) / per_step))


def default_memory_limit(device: torch.device, configured: int | None) -> int | None:
    """max_memory from the spec, else 90% of the GPU, else half of this machine's RAM."""
    if configured is not None:
        return configured
    if device.type == "cuda":
        return int(0.9 * torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError):
        return None


def _saved_bytes(run: Callable[[], torch.Tensor], params: set[int]) -> tuple[torch.Tensor, int]:
    """Run a forward pass and count the bytes autograd keeps for the backward pass (weights excluded)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = run()
    return loss, sum(seen.values())


MEASURE_SHARE = 0.02  # of the time budget that timing one batch size may take before its figure is taken


def measure(model: torch.nn.Module, make_optimizer: Callable, batches_for: Callable[[int], Callable],
            sizes: list[int], device: torch.device, autocast, steps: int = 3, preference=None,
            budget: float | None = None) -> list[Measurement]:
    """Time `steps` optimizer steps (after one warm-up) for each batch size on a copy of the model.

    preference: the run's tailor.models.preference.Preference, whose loss (and reference pass) is timed instead.
    budget: the run's time budget; a size whose steps have taken MEASURE_SHARE of it stops being timed at once
    (a step that slow dwarfs the first step's allocation cost, which then counts as its figure), so that a
    slow model does not spend its budget on steps that are thrown away.
    """
    from tailor.models import compute_loss
    from tailor.models.preference import preference_loss
    from tailor.train.loop import real_tokens, to_device

    def loss_of(probe, batch):
        return compute_loss(probe, batch)[1] if preference is None else preference_loss(probe, batch, preference)[0]

    out = []
    state_per_param = 16  # bytes per fp32 weight: itself, its gradient, two AdamW moments
    for bs in sizes:
        probe = copy.deepcopy(model).to(device).train()
        opt = make_optimizer(probe)
        params = {p.untyped_storage().data_ptr() for p in probe.parameters()}
        weights = sum(p.numel() for p in probe.parameters()) * state_per_param
        batches = batches_for(bs)
        times, saved, tokens, spent = [], 0, 0, 0.0
        for step in range(steps + 1):
            batch = to_device(batches(step), device)
            start = time.perf_counter()
            with autocast():
                loss, saved = _saved_bytes(lambda: loss_of(probe, batch), params)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            took = time.perf_counter() - start
            spent += took
            tokens = real_tokens(batch)  # padding is not throughput
            if step:  # the first step pays for allocation and kernel selection
                times.append(took)
            if budget is not None and spent > MEASURE_SHARE * budget:
                times = times or [took]
                break
        out.append(Measurement(bs, sorted(times)[len(times) // 2], tokens, weights + saved))
    return out


def time_eval(model: torch.nn.Module, val_batches, limit: int, device: torch.device, preference=None) -> float:
    """Seconds one validation pass takes."""
    from tailor.train.loop import evaluate

    start = time.perf_counter()
    evaluate(model, val_batches, limit, device, preference)
    return time.perf_counter() - start
