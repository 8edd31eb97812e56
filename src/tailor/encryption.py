"""Encryption at rest: AES-256-GCM with a key from the environment (TAILOR_DATA_KEY), decrypted only in memory.

`tailor encrypt PATH` replaces every file with `<name>.enc` (weights, tokenizers, data splits, predictions,
error samples, reports, plots, checkpoints), except the few in PLAINTEXT, which hold no records and must
be readable before a key is at hand; a stage marker keeps its hashes readable (the runner compares them
without a key) and has its summary, which can quote records, sealed inside it. Loaders read an `.enc` file through `read_bytes`,
so the plaintext never touches the disk again. A wrong key or a changed byte fails the authentication
tag and stops the load.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

from tailor.artifacts import MARKER, atomic_write_bytes, atomic_write_json
from tailor.errors import TailorError

ENV = "TAILOR_DATA_KEY"
MAGIC = b"TAILOR-AESGCM-1\n"
SUFFIX = ".enc"
# The files left readable, and why none of them holds a record (the README lists them too).
PLAINTEXT = {
    "manifest.json": "sha256 of every file, checked before any key is used",
    "config.json": "the model's architecture, field names and label names, read before its weights",
    "tokenizer_config.json": "the tokenizer's special tokens and chat template",
    "run.json": "run id, stage status and target counts, for `tailor runs`",
    "spec.resolved.yaml": "the spec the run was made with; `tailor serve` reads its deploy section",
    "metrics.json": "metric values by name, for `tailor registry add` and `tailor compare`",
    "fingerprint.json": "a hash of the training inputs",
    ".lock": "an empty lock file",
    MARKER: "a stage's name and content hashes; its summary is sealed inside it",
}


def new_key() -> str:
    """A fresh 256-bit key, urlsafe base64, for TAILOR_DATA_KEY."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _key() -> bytes:
    value = os.environ.get(ENV)
    if not value:
        raise TailorError(f"{ENV} is not set; encrypted files need the key (create one with `tailor encrypt --new-key`)")
    try:
        key = base64.urlsafe_b64decode(value.encode())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise TailorError(f"{ENV}: expected 32 bytes in urlsafe base64 (44 characters), as `tailor encrypt --new-key` prints")
    return key


def encrypt_file(path: Path) -> Path:
    """Write path + '.enc' (nonce and ciphertext bound to the file name) and remove the plaintext."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = Path(path)
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_key()).encrypt(nonce, path.read_bytes(), path.name.encode())
    target = path.with_name(path.name + SUFFIX)
    atomic_write_bytes(target, MAGIC + nonce + sealed)
    path.unlink()
    return target


def seal_marker(path: Path) -> Path:
    """Seal a stage marker's summary in place (bound to the marker's folder and name); its hashes stay readable."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    path = Path(path)
    marker = json.loads(path.read_text())
    summary = marker.get("summary")
    if not (isinstance(summary, dict) and set(summary) == {"sealed"}):
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(_key()).encrypt(nonce, json.dumps(summary).encode(), _marker_context(path))
        marker["summary"] = {"sealed": base64.b64encode(MAGIC + nonce + sealed).decode()}
        atomic_write_json(path, marker)
    return path


def marker_summary(path: Path) -> object:
    """A stage marker's summary, decrypted in memory when `tailor encrypt` sealed it."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    summary = json.loads(Path(path).read_text()).get("summary")
    if not (isinstance(summary, dict) and set(summary) == {"sealed"}):
        return summary
    data = base64.b64decode(summary["sealed"])
    nonce, sealed = data[len(MAGIC):len(MAGIC) + 12], data[len(MAGIC) + 12:]
    try:
        return json.loads(AESGCM(_key()).decrypt(nonce, sealed, _marker_context(path)))
    except InvalidTag:
        raise TailorError(f"{path}: cannot decrypt its summary: wrong {ENV} or the file was changed") from None


def _marker_context(path: Path) -> bytes:
    return f"{Path(path).parent.name}/{Path(path).name}".encode()


def decrypt_bytes(path: Path) -> bytes:
    """The plaintext of an .enc file, in memory."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise TailorError(f"{path}: not a file encrypted by Tailor")
    nonce, sealed = data[len(MAGIC):len(MAGIC) + 12], data[len(MAGIC) + 12:]
    try:
        return AESGCM(_key()).decrypt(nonce, sealed, Path(path).name.removesuffix(SUFFIX).encode())
    except InvalidTag:
        raise TailorError(f"{path}: cannot decrypt: wrong {ENV} or the file was changed") from None


def read_bytes(path: Path) -> bytes:
    """A file's bytes, or its encrypted twin's (path + '.enc') decrypted in memory."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    sealed = path.with_name(path.name + SUFFIX)
    if sealed.is_file():
        return decrypt_bytes(sealed)
    raise TailorError(f"{path}: not found (nor {sealed.name})")


def read_text(path: Path) -> str:
    """A text file's content, or its encrypted twin's, decrypted in memory."""
    return read_bytes(path).decode("utf-8")


def exists(path: Path) -> bool:
    """Whether the file, or its encrypted twin, is there."""
    path = Path(path)
    return path.is_file() or path.with_name(path.name + SUFFIX).is_file()


def sealed(path: Path) -> bool:
    """Whether `tailor encrypt` seals this file (everything but PLAINTEXT and what is sealed already)."""
    path = Path(path)
    return path.name not in PLAINTEXT and path.suffix != SUFFIX


def encrypt_tree(root: Path) -> list[Path]:
    """Encrypt every file under root (a file or a folder) but those in PLAINTEXT; manifests are rewritten."""
    from tailor.manifest import MANIFEST, write_manifest

    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    done = [encrypt_file(p) for p in files if sealed(p)]
    done += [seal_marker(p) for p in files if p.name == MARKER]
    for manifest in ({root.parent} if root.is_file() else {p.parent for p in root.rglob(MANIFEST)}):
        if (manifest / MANIFEST).is_file():
            write_manifest(manifest)  # the checksums now cover the encrypted files
    return done
