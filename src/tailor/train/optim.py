"""Optimizers (AdamW, SGD, Adafactor) over parameter groups, and the learning rate per group."""

from __future__ import annotations

import torch

from tailor.spec.train import Optimizer as OptimizerSpec


def decay_groups(model: torch.nn.Module, weight_decay: float, groups: list[dict] | None = None) -> list[dict]:
    """Split each group (default: all trainable parameters) into decayed matrices and undecayed vectors.

    Norm weights, biases and other vectors are never decayed. A group may carry `lr_scale` (for
    discriminative learning rates); it is kept on both halves.
    """
    groups = groups or [{"params": list(model.parameters())}]
    out = []
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad or group.get("thaws")]  # thaws: frozen now, trained later
        extra = {k: v for k, v in group.items() if k not in ("params", "thaws")}
        for chosen, wd in (([p for p in params if p.dim() >= 2], weight_decay), ([p for p in params if p.dim() < 2], 0.0)):
            if chosen:
                out.append({**extra, "params": chosen, "weight_decay": wd})
    return out


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """The fused AdamW kernel exists for floating-point tensors on CPU and CUDA."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)


def make_optimizer(model: torch.nn.Module, cfg: OptimizerSpec, groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """The optimizer train.optimizer names, over decay_groups(model, ...)."""
    param_groups = decay_groups(model, cfg.weight_decay, groups)
    if cfg.name == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.name == "adafactor":
        return torch.optim.Adafactor(param_groups, lr=cfg.lr)
    params = [p for g in param_groups for p in g["params"]]
    # one fused kernel per step instead of a loop over tensors: the largest optimizer cost on CPU
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=cfg.betas, fused=_fused_ok(params) or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to lr times its lr_scale (1 by default)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
