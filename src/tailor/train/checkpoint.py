"""Checkpoints as safetensors + JSON only (no pickle), written atomically with checksums.

A checkpoint folder holds model.safetensors, optimizer.safetensors (its tensors and the RNG
states), state.json (step, optimizer hyperparameters, loop counters) and, written last,
manifest.json with the sha256 of each file. A folder without a matching manifest is incomplete
or damaged and is never loaded: it is moved, whole, into the quarantine folder beside the
checkpoints with a JSON note of what was wrong, and training resumes from the newest good one (or
refuses to start over while the quarantine holds what it could not use). For a model whose base
stays frozen (LoRA) model.safetensors holds only the trained weights (the adapters): the base is
the model stage's, unchanged.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tailor.artifacts import atomic_dir, atomic_write_json, recover_dir, sha256_file
from tailor.errors import TailorError

MANIFEST = "manifest.json"
_NAME = re.compile(r"^step-(\d{7,})$")


def _inner(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer


def gather_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                 trained_only: bool = False) -> tuple[dict, dict]:
    """Whole model and optimizer state dicts keyed by parameter name, on the CPU.

    Works the same for a plain, DDP-wrapped, FSDP-sharded or compiled model; under FSDP it is a
    collective (every rank calls it) and rank 0 receives the full state. trained_only leaves out
    the frozen parameters.
    """
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_state_dict)

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=trained_only)
    if optimizer is None:
        return get_model_state_dict(model, options=options), {}
    return get_state_dict(model, _inner(optimizer), options=options)


def _split_tensors(tree: dict, prefix: str, tensors: dict, path: str = "") -> object:
    """Move every tensor of a nested dict into `tensors` (flat names); return the JSON-able rest."""
    out = {}
    for key, value in tree.items():
        name = f"{path}{key}"
        if torch.is_tensor(value):
            tensors[f"{prefix}{name}"] = value.detach().cpu().contiguous()
            out[key] = {"tensor": f"{prefix}{name}"}
        elif isinstance(value, dict):
            out[key] = _split_tensors(value, prefix, tensors, f"{name}/")
        else:
            out[key] = value
    return out


def _join_tensors(tree: dict, tensors: dict) -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and set(value) == {"tensor"}:
            out[key] = tensors[value["tensor"]]
        elif isinstance(value, dict):
            out[key] = _join_tensors(value, tensors)
        else:
            out[key] = value
    return out


def _unique(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tied weights are stored once: (tensors, alias -> stored name)."""
    seen: dict[int, str] = {}
    tensors, aliases = {}, {}
    for name, t in state.items():
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.shape == state[seen[ptr]].shape:
            aliases[name] = seen[ptr]
        else:
            seen[ptr] = name
            tensors[name] = t.contiguous()
    return tensors, aliases


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


def save_checkpoint(folder: Path, model_state: dict, optimizer_state: dict, step: int, extra: dict | None = None,
                    trained_only: bool = False) -> Path:
    """Write state dicts (from gather_state) atomically into folder: temp folder, fsync, rename.

    trained_only: model_state holds only the trained parameters; loading then leaves the others as they are.
    """
    with atomic_dir(folder) as tmp:
        weights, aliases = _unique(model_state)
        save_file(weights, str(tmp / "model.safetensors"))
        tensors: dict[str, torch.Tensor] = {}
        meta = _split_tensors(optimizer_state, "optim.", tensors)
        save_file(tensors | _rng_tensors(), str(tmp / "optimizer.safetensors"))
        atomic_write_json(tmp / "state.json", {"step": step, "optimizer": meta, "aliases": aliases,
                                               "trained_only": trained_only, "python_rng": random.getstate(),
                                               **(extra or {})})
        files = sorted(p.name for p in tmp.iterdir())
        atomic_write_json(tmp / MANIFEST, {"step": step, "sha256": {n: sha256_file(tmp / n) for n in files}})
    return Path(folder)


def verify(folder: Path, only: tuple[str, ...] | None = None) -> str | None:
    """None when the checkpoint is complete and its checksums match (only those of `only`, if given); else what is wrong."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return "no manifest (the write did not finish)"
    try:
        sums = json.loads(manifest.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return "unreadable manifest"
    for name in only or ():
        if name not in sums:
            return f"{name} is not in the manifest"
    for name, digest in sums.items():
        if only is not None and name not in only:
            continue
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != digest:
            return f"{name} does not match its checksum"
    return None


WEIGHTS = ("model.safetensors", "state.json")  # what loading the weights alone reads


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    trained: set[str] | None = None) -> dict:
    """Load weights (and optimizer and RNG states) from folder into model; return its state.json.

    model may be wrapped (DDP, FSDP: every rank calls this) or plain. A checkpoint of the trained
    parameters only must hold exactly `trained` (their names); the frozen ones stay as they are.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_state_dict

    folder = Path(folder)
    state = json.loads((folder / "state.json").read_text())
    weights = load_file(str(folder / "model.safetensors"))
    for alias, name in state.get("aliases", {}).items():
        weights[alias] = weights[name]
    partial = bool(state.get("trained_only"))
    if partial and set(weights) != trained:
        odd = sorted(set(weights) ^ (trained or set()))
        raise TailorError(f"{folder}: holds only trained weights, and they do not fit the model being trained "
                          f"({len(odd)} names differ, e.g. {odd[0] if odd else 'no trained names given'})")
    options = StateDictOptions(full_state_dict=True, strict=not partial)
    if optimizer is None:
        set_model_state_dict(model, weights, options=options)
        return state
    tensors = load_file(str(folder / "optimizer.safetensors"))
    _restore_rng(tensors, state["python_rng"])
    set_state_dict(model, _inner(optimizer), model_state_dict=weights,
                   optim_state_dict=_join_tensors(state["optimizer"], tensors), options=options)
    return state


class Checkpoints:
    """The checkpoints of one training run: find the latest good one, save, keep the last K plus the best."""

    def __init__(self, root: Path, keep_last: int = 2, warn=print, trained: set[str] | None = None,
                 quarantine: Path | None = None):
        """trained: save only these parameters (by name), for a model whose frozen base never changes.

        quarantine: where damaged checkpoints are moved (default: `quarantine` beside root).
        """
        self.root, self.keep_last, self.warn, self.trained = Path(root), keep_last, warn, trained
        self.quarantine = Path(quarantine) if quarantine is not None else self.root.parent / "quarantine"

    def steps(self) -> list[int]:
        """Steps that have a checkpoint folder (complete or not), oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.root.iterdir() if (m := _NAME.match(p.name)))

    def path(self, step: int) -> Path:
        return self.root / checkpoint_name(step)

    def quarantined(self) -> list[dict]:
        """The notes of the checkpoints set aside as damaged (folder, reason, when), oldest first."""
        if not self.quarantine.is_dir():
            return []
        notes = [json.loads(p.read_text()) for p in sorted(self.quarantine.glob("*.json"))]
        return sorted(notes, key=lambda n: n.get("at", 0))

    def set_aside(self, folder: Path, problem: str) -> Path:
        """Move a damaged checkpoint into the quarantine folder, whole, with a note of what was wrong."""
        self.quarantine.mkdir(parents=True, exist_ok=True)
        target = self.quarantine / folder.name
        n = 1
        while target.exists() or target.with_name(target.name + ".json").exists():
            n += 1
            target = self.quarantine / f"{folder.name}.{n}"
        os.replace(folder, target)  # same filesystem: a rename, nothing copied or lost
        atomic_write_json(target.with_name(target.name + ".json"),
                          {"checkpoint": target.name, "from": str(folder), "problem": problem, "at": time.time()})
        return target

    def latest_good(self, drop_bad: bool = True) -> Path | None:
        """The newest checkpoint whose checksums match; damaged newer ones are reported (with drop_bad, quarantined)."""
        if self.root.is_dir():  # a write killed half-way leaves a hidden temp (or .old) folder
            for leftover in self.root.glob(".step-*"):
                recover_dir(self.root / leftover.name[1:].split(".", 1)[0])
        damaged = []
        good = None
        for step in reversed(self.steps()):
            folder = self.path(step)
            problem = verify(folder)
            if problem is None:
                good = folder
                break
            damaged.append((folder, problem))
        for folder, problem in damaged:
            where = f"; moved to {self.set_aside(folder, problem)}" if drop_bad else ""
            after = f"the newest good one is {good.name}" if good is not None else "no earlier checkpoint is good"
            self.warn(f"checkpoint {folder} is damaged ({problem}){where}; {after}")
        return good

    def resume_point(self) -> Path | None:
        """The checkpoint to continue from; None for a fresh start, refused when checkpoints existed and none is good."""
        good = self.latest_good(drop_bad=True)
        if good is not None:
            return good
        notes = self.quarantined()
        if notes:
            reasons = "; ".join(f"{n['checkpoint']}: {n['problem']}" for n in notes[-3:])
            raise TailorError(f"train: no good checkpoint to resume from in {self.root}, and {len(notes)} damaged "
                              f"one(s) are in {self.quarantine} ({reasons}); not starting again from step 0 "
                              f"on its own. To train from scratch, move {self.quarantine} elsewhere")
        return None

    def save(self, model, optimizer, step: int, extra: dict, best_step: int | None, write: bool = True) -> None:
        """Save step's checkpoint, then delete all but the newest keep_last and best_step.

        Every rank calls this (gathering FSDP shards is a collective); only the one with write=True writes.
        """
        partial = self.trained is not None
        model_state, optimizer_state = gather_state(model, optimizer, partial)
        if not write:
            return
        if partial:  # a frozen weight tied to another (a LoRA base's lm_head) escapes ignore_frozen_params
            model_state = {k: v for k, v in model_state.items() if k in self.trained}
        save_checkpoint(self.path(step), model_state, optimizer_state, step, extra, partial)
        keep = set(self.steps()[-self.keep_last:]) | ({best_step} if best_step is not None else set())
        for old in self.steps():
            if old not in keep:
                shutil.rmtree(self.path(old), ignore_errors=True)

    def load(self, folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict:
        """load_checkpoint with the names of the parameters this run's checkpoints hold."""
        return load_checkpoint(folder, model, optimizer, self.trained)

    def load_weights(self, step: int, model: torch.nn.Module) -> str | None:
        """Load step's weights only after they verify; else quarantine the checkpoint and return what was wrong."""
        folder = self.path(step)
        problem = verify(folder, WEIGHTS) if folder.is_dir() else "it is not there"
        if problem is None:
            load_checkpoint(folder, model, None, self.trained)
            return None
        try:
            if folder.is_dir():
                self.set_aside(folder, problem)
        except FileNotFoundError:  # another rank of the same run moved it first
            pass
        return problem
