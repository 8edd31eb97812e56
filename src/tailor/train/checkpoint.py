"""Checkpoints as safetensors + JSON only (no pickle), written atomically with checksums.

A checkpoint folder holds model.safetensors, optimizer.safetensors (its tensors and the RNG
states), state.json (step, optimizer hyperparameters, loop counters) and, written last,
manifest.json with the sha256 of each file. A folder without a matching manifest is incomplete
or damaged and is never loaded.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from tailor.artifacts import atomic_dir, atomic_write_json, recover_dir, sha256_file

MANIFEST = "manifest.json"
_NAME = re.compile(r"^step-(\d{7,})$")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into flat tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for idx, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                meta["scalars"][f"{idx}.{name}"] = value
    return tensors, meta


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Load what optimizer_tensors split off back into the optimizer."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out |= {f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return out


def _restore_rng(tensors: dict[str, torch.Tensor], python_rng: list) -> None:
    torch.set_rng_state(tensors.pop("rng.torch").cpu())
    cuda = sorted((k for k in list(tensors) if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    states = [tensors.pop(k).cpu() for k in cuda]
    if states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states[: torch.cuda.device_count()])
    version, internal, gauss = python_rng
    random.setstate((version, tuple(internal), gauss))


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    extra: dict | None = None) -> Path:
    """Write the whole training state atomically into folder (temp folder, fsync, rename)."""
    with atomic_dir(folder) as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, meta = optimizer_tensors(optimizer)
        save_file(tensors | _rng_tensors(), str(tmp / "optimizer.safetensors"))
        atomic_write_json(tmp / "state.json", {"step": step, "optimizer": meta, "python_rng": random.getstate(),
                                               **(extra or {})})
        files = sorted(p.name for p in tmp.iterdir())
        atomic_write_json(tmp / MANIFEST, {"step": step, "sha256": {n: sha256_file(tmp / n) for n in files}})
    return Path(folder)


def verify(folder: Path) -> str | None:
    """None when the checkpoint is complete and its checksums match; else what is wrong."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return "no manifest (the write did not finish)"
    try:
        sums = json.loads(manifest.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return "unreadable manifest"
    for name, digest in sums.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != digest:
            return f"{name} does not match its checksum"
    return None


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Load weights (and optimizer and RNG states) from folder into model; return its state.json."""
    folder = Path(folder)
    load_model(model, str(folder / "model.safetensors"), device=str(next(model.parameters()).device))
    state = json.loads((folder / "state.json").read_text())
    if optimizer is not None:
        tensors = load_file(str(folder / "optimizer.safetensors"))
        _restore_rng(tensors, state["python_rng"])
        restore_optimizer(optimizer, tensors, state["optimizer"])
    return state


class Checkpoints:
    """The checkpoints of one training run: find the latest good one, save, keep the last K plus the best."""

    def __init__(self, root: Path, keep_last: int = 2, warn=print):
        self.root, self.keep_last, self.warn = Path(root), keep_last, warn

    def steps(self) -> list[int]:
        """Steps that have a checkpoint folder (complete or not), oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _NAME.match(p.name)))

    def path(self, step: int) -> Path:
        return self.root / checkpoint_name(step)

    def latest_good(self, drop_bad: bool = True) -> Path | None:
        """The newest checkpoint whose checksums match; damaged newer ones are reported (and set aside)."""
        if self.root.is_dir():  # a write killed half-way leaves a hidden temp (or .old) folder
            for leftover in self.root.glob(".step-*"):
                recover_dir(self.root / leftover.name[1:].split(".", 1)[0])
        for step in reversed(self.steps()):
            folder = self.path(step)
            problem = verify(folder)
            if problem is None:
                return folder
            self.warn(f"checkpoint {folder} is damaged ({problem}); using the previous one")
            if drop_bad:
                shutil.rmtree(folder, ignore_errors=True)
        return None

    def save(self, model, optimizer, step: int, extra: dict, best_step: int | None) -> Path:
        """Save step's checkpoint, then delete all but the newest keep_last and best_step."""
        folder = save_checkpoint(self.path(step), model, optimizer, step, extra)
        keep = set(self.steps()[-self.keep_last:]) | ({best_step} if best_step is not None else set())
        for old in self.steps():
            if old not in keep:
                shutil.rmtree(self.path(old), ignore_errors=True)
        return folder
