"""Encryption at rest: AES-256-GCM with a key from the environment (TAILOR_DATA_KEY), decrypted only in memory.

`tailor encrypt PATH` replaces each weight, tokenizer and data file with `<name>.enc`; loaders read
an `.enc` file through `read_bytes`, so the plaintext never touches the disk again. A wrong key or a
changed byte fails the authentication tag and stops the load.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from tailor.errors import TailorError

ENV = "TAILOR_DATA_KEY"
MAGIC = b"TAILOR-AESGCM-1\n"
SUFFIX = ".enc"
ENCRYPTED = (".safetensors", ".parquet", ".jsonl", ".csv", ".tsv", ".txt")  # plus tokenizer.json


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
    from tailor.artifacts import atomic_write_bytes

    atomic_write_bytes(target, MAGIC + nonce + sealed)
    path.unlink()
    return target


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


def exists(path: Path) -> bool:
    path = Path(path)
    return path.is_file() or path.with_name(path.name + SUFFIX).is_file()


def encrypt_tree(root: Path) -> list[Path]:
    """Encrypt every weight, tokenizer and data file under root (a file or a folder); manifests are rewritten."""
    from tailor.manifest import MANIFEST, write_manifest

    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    done = [encrypt_file(p) for p in files if p.suffix in ENCRYPTED or p.name == "tokenizer.json"]
    for manifest in ({root.parent} if root.is_file() else {p.parent for p in root.rglob(MANIFEST)}):
        if (manifest / MANIFEST).is_file():
            write_manifest(manifest)  # the checksums now cover the encrypted files
    return done
