"""One process or many: the accelerate Accelerator the loop runs on, and `--nproc N` via torchrun.

Across machines, start the same command on every node with torchrun or `accelerate launch`
(see the README); each rank builds the same global batch and trains on its share of the rows.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from tailor.device import has_bf16, pick_device
from tailor.errors import TailorError
from tailor.spec.train import Train


def resolve_precision(choice: str, device: torch.device) -> str:
    """accelerate's mixed_precision ('no', 'bf16', 'fp16') for train.precision on this device."""
    if choice == "auto":
        return "bf16" if has_bf16(device) else "no"
    if choice == "fp16" and device.type != "cuda":
        raise TailorError(f"train.precision: fp16 needs a CUDA device (this run is on {device.type}); use bf16 or fp32")
    return {"fp32": "no"}.get(choice, choice)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def make_accelerator(cfg: Train, device_choice: str):
    """An Accelerator for this process: device, mixed precision, and DDP or FSDP when launched on several ranks."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import InitProcessGroupKwargs

    device = pick_device(device_choice)
    AcceleratorState._reset_state()  # each training run in a process chooses its own precision
    kwargs: dict = {}
    if cfg.distributed.backend != "auto":
        kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend=cfg.distributed.backend)]
    if cfg.distributed.strategy == "fsdp" and world_size() > 1:
        from accelerate import FullyShardedDataParallelPlugin

        kwargs["fsdp_plugin"] = FullyShardedDataParallelPlugin()
    return Accelerator(cpu=device.type == "cpu", mixed_precision=resolve_precision(cfg.precision, device), **kwargs)


def prepare_for_training(acc, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """accelerate's prepare, with the model's outputs left in the autocast dtype.

    Under mixed precision accelerate wraps forward in autocast and converts its outputs to float32.
    The loop autocasts itself and the losses upcast where it matters, so that conversion would only
    add a float32 copy of the whole (batch, time, vocabulary) logits outside any compiled graph.
    """
    wrapped, optimizer = acc.prepare(model, optimizer)
    if (original := getattr(model, "_original_forward", None)) is not None:
        model.forward = original
    return wrapped, optimizer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, args: list[str]) -> int:
    """Run `tailor <args>` on nproc local processes with torchrun; return its exit code."""
    if nproc < 1:
        raise TailorError(f"--nproc must be at least 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "tailor.cli",
           *(["--debug"] if "--debug" in sys.argv else []), *args]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))}
    return subprocess.call(cmd, env=env)


def broadcast_text(text: str | None) -> str:
    """Rank 0's text on every rank (a length-prefixed byte tensor; no pickle)."""
    import torch.distributed as dist

    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    data = torch.tensor(list((text or "").encode()), dtype=torch.uint8, device=dev)
    size = torch.tensor([len(data)], dtype=torch.long, device=dev)
    dist.broadcast(size, 0)
    buf = data if dist.get_rank() == 0 else torch.empty(int(size.item()), dtype=torch.uint8, device=dev)
    dist.broadcast(buf, 0)
    return bytes(buf.cpu().tolist()).decode()
