"""Writing and fingerprinting artifacts: atomic files and directories, content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

MARKER = ".tailor-stage.json"  # written last into a finished stage directory
# Columns Tailor adds to the data artifacts carry this prefix, so a user's own field (a CRM export's
# `source`, say) never meets one of them; records may not bring fields of their own with it.
RESERVED_PREFIX = "_tailor_"
SOURCE_COLUMN = RESERVED_PREFIX + "source"  # file:line (or URL, or generator) each record came from


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_file(path: Path) -> Path:
    """Make sure path exists and only its owner may read or write it (a database of keys, ratings, feedback)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        os.chmod(path, 0o600)  # one made by an earlier version, readable by everyone
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data so that path holds either its old content or all of the new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: object) -> str:
    """How artifacts store JSON: indented, keys in their order, anything else as its str()."""
    return json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json_text(obj))


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a scratch directory that replaces `final` only if the block finishes.

    A crash inside the block leaves `final` as it was; a crash between the two renames leaves a
    `.old` copy that `recover_dir` puts back.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        for root, _dirs, files in os.walk(tmp):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    os.fsync(f.fileno())
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(final: Path) -> None:
    """Undo what a crash inside `atomic_dir` left: restore `.old` copies, drop scratch folders."""
    final = Path(final)
    if not final.parent.exists():
        return
    for leftover in final.parent.glob(f".{final.name}.old-*"):
        if final.exists():
            shutil.rmtree(leftover)
        else:
            os.replace(leftover, final)
    for leftover in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_tree(root: Path, exclude: tuple[str, ...] = (MARKER,)) -> str:
    """One sha256 over every file's relative path and content under root (a file: its content)."""
    root = Path(root)
    if root.is_file():
        return sha256_file(root)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in exclude):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + sha256_file(path).encode())
    return h.hexdigest()


def hash_json(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def link_tree(src: Path, dst: Path) -> None:
    """Copy a finished directory by hard links (a plain copy across filesystems)."""
    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link)
