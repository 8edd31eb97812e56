"""Shared pieces of the spec models: strict base class, durations and sizes."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

SPLITS = ("train", "validation", "test")
# A name that becomes a folder (a run, a registry entry): no separators, no leading dot, so it stays inside its root.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def check_name(value: str, what: str) -> str:
    """The name if it is a safe folder name (as a spec's `name` must be), else ValueError saying what is allowed."""
    if not re.fullmatch(NAME_PATTERN, value or ""):
        raise ValueError(f"{what} {value!r}: expected letters, digits, '_', '.' or '-', starting with a letter or "
                         "digit (it names a folder)")
    return value


class Strict(BaseModel):
    """A spec section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|d|h|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: object) -> float:
    """'15m', '1h30m', '90s', '1d', 45 (seconds) -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower().replace(" ", "")
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"expected a duration like '90s', '15m', '1h30m' or '1d', got {value!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?")
_BYTES = {None: 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(value: object) -> int:
    """'8GB', '512MiB', 1024 (bytes) -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.fullmatch(str(value).strip().lower())
    if not m:
        raise ValueError(f"expected a size like '512MB' or '8GB', got {value!r}")
    return int(float(m.group(1)) * _BYTES[m.group(2)])


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
