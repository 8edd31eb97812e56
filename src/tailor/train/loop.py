"""The training loop, written out: AdamW, warmup + schedule, clipping, validation, logging."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.progress import Progress

from tailor.errors import TailorError
from tailor.models import compute_loss
from tailor.spec.train import Train
from tailor.train.schedule import lr_at


def make_optimizer(model: torch.nn.Module, cfg: Train) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on norms, biases or other vectors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.optimizer.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optimizer.lr, betas=cfg.optimizer.betas)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, batches, limit: int | None, device: torch.device) -> tuple[float, int]:
    """Mean loss per scored token over the first `limit` evaluation batches (None: all), and the token count."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in batches.eval_batches(limit):
        _, loss, n = compute_loss(model, to_device(batch, device))
        total += loss.item() * n
        count += n
    model.train(was_training)
    return (total / count if count else float("nan")), count


def train_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_batches: Callable, val_batches,
               cfg: Train, device: torch.device, metrics_path: Path, max_time: float | None = None,
               progress: Progress | None = None) -> dict:
    """Run cfg.max_steps optimizer steps (or until max_time seconds); log to metrics_path (JSONL)."""
    model.to(device).train()
    log_every = max(1, cfg.max_steps // 200)
    start = time.perf_counter()
    tokens = window_tokens = 0
    window_loss, window_steps, window_start = 0.0, 0, start
    best_val, stopped = math.inf, "max_steps"
    task = progress.add_task("train", total=cfg.max_steps) if progress else None
    with open(metrics_path, "a", encoding="utf-8") as log:
        def write(row: dict) -> None:
            log.write(json.dumps(row) + "\n")
            log.flush()

        step = 0
        for step in range(cfg.max_steps):
            lr = lr_at(step, cfg.optimizer.lr, cfg.max_steps, cfg.schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = to_device(train_batches(step), device)
            _, loss, _ = compute_loss(model, batch)
            if not torch.isfinite(loss):
                raise TailorError(f"train: the loss became {loss.item()} at step {step}; lower train.optimizer.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            n = batch["input_ids"].numel()
            tokens += n
            window_tokens += n
            window_loss += loss.item()
            window_steps += 1
            done = step + 1
            if done % log_every == 0 or done == cfg.max_steps:
                now = time.perf_counter()
                speed = window_tokens / max(now - window_start, 1e-9)
                write({"step": done, "split": "train", "loss": window_loss / window_steps, "lr": lr,
                       "tokens": tokens, "tokens_per_s": round(speed, 1), "elapsed_s": round(now - start, 3)})
                if progress and task is not None:
                    progress.update(task, completed=done, info=f"loss {window_loss / window_steps:.4f} · {speed:,.0f} tok/s")
                window_loss, window_steps, window_tokens, window_start = 0.0, 0, 0, now
            out_of_time = max_time is not None and time.perf_counter() - start > max_time
            if done % cfg.eval_every == 0 or done == cfg.max_steps or out_of_time:
                val, _ = evaluate_loss(model, val_batches, cfg.eval_batches, device)
                best_val = min(best_val, val)
                write({"step": done, "split": "validation", "loss": val, "elapsed_s": round(time.perf_counter() - start, 3)})
            if out_of_time:
                stopped = "time budget"
                break
    elapsed = time.perf_counter() - start
    return {"steps": step + 1, "tokens": tokens, "seconds": round(elapsed, 2), "stopped_by": stopped,
            "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1), "best_validation_loss": best_val}
