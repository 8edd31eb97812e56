"""Checkpoints as safetensors + JSON only (no pickle): model, optimizer, RNG, step."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tailor.artifacts import atomic_dir, atomic_write_json
from tailor.models import load_model, save_model


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value.contiguous()
            else:
                meta["scalars"][f"{idx}.{name}"] = value
    return tensors, meta


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, model, optimizer, step: int, extra: dict | None = None) -> None:
    """Write the whole training state atomically into folder."""
    with atomic_dir(folder) as tmp:
        save_model(model, tmp)
        tensors, meta = optimizer_tensors(optimizer)
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        atomic_write_json(tmp / "state.json", {"step": step, "optimizer": meta,
                                               "python_rng": random.getstate(), **(extra or {})})


def load_checkpoint(folder: Path, optimizer_factory, device: str = "cpu"):
    """(model, optimizer, state) from a checkpoint folder; optimizer_factory(model) builds the optimizer."""
    folder = Path(folder)
    model = load_model(folder, device)
    optimizer = optimizer_factory(model)
    tensors = load_file(str(folder / "optimizer.safetensors"), device=str(device))
    state = json.loads((folder / "state.json").read_text())
    torch.set_rng_state(tensors.pop("rng.torch").cpu())
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    restore_optimizer(optimizer, tensors, state["optimizer"])
    return model, optimizer, state
