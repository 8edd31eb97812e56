"""A model folder's manifest: the sha256 of every file, written when the folder is made, checked at load.

A changed, missing or unlisted file (a swapped weight file, an edited tokenizer) stops the load
with a message naming it.
"""

from __future__ import annotations

import json
from pathlib import Path

from tailor.artifacts import MARKER, atomic_write_json, sha256_file
from tailor.errors import TailorError

MANIFEST = "manifest.json"
_SKIP = {MANIFEST, MARKER}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _SKIP and not p.name.startswith("."))


def write_manifest(folder: Path) -> dict:
    """Write manifest.json listing every file of the folder with its sha256."""
    folder = Path(folder)
    manifest = {"algorithm": "sha256",
                "files": {p.relative_to(folder).as_posix(): sha256_file(p) for p in _files(folder)}}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def verify_manifest(folder: Path) -> None:
    """Refuse the folder unless every file matches its manifest entry and no file is unlisted."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise TailorError(f"{folder}: no {MANIFEST}, so its files cannot be verified; models that Tailor trains, "
                          f"registers or exports carry one (tailor export {folder} --format hf writes a verified copy)")
    try:
        listed = json.loads(path.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise TailorError(f"{path}: not a manifest (expected {{'algorithm': 'sha256', 'files': {{...}}}})") from None
    present = {p.relative_to(folder).as_posix() for p in _files(folder)}
    problems = [f"{name}: missing" for name in sorted(set(listed) - present)]
    problems += [f"{name}: not in the manifest" for name in sorted(present - set(listed))]
    problems += [f"{name}: checksum differs" for name in sorted(set(listed) & present)
                 if sha256_file(folder / name) != listed[name]]
    if problems:
        raise TailorError(f"{folder}: refusing to load, the files do not match {MANIFEST}: " + "; ".join(problems))
