"""Which device a run uses and what it computes natively, for every stage and the server."""

from __future__ import annotations

import torch


def pick_device(choice: str) -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(choice)


def has_bf16(device: torch.device) -> bool:
    """Whether the device computes in bf16 natively: a recent GPU, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(getattr(torch.cpu, probe, lambda: False)()
                   for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False
