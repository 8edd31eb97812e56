"""API keys: created once and shown once, stored only as sha256 hashes in SQLite, checked in constant time.

A key reads `tlr_<id>_<secret>`: the id finds the row, the hash of the whole key must match it.
Every check reads the database, so `tailor keys revoke` takes effect on a running server at once; it reads
through a connection its thread keeps open (opening one costs ten times the query, on every request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tailor.deploy.store import SQLiteFile
from tailor.errors import TailorError

SCOPES = ("infer", "admin")  # admin may do everything infer may, plus metrics and model management
_SCHEMA = """CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL, scopes TEXT NOT NULL,
    created REAL NOT NULL, revoked REAL)"""


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    scopes: tuple[str, ...]
    created: float
    revoked: float | None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    """The keys of one deployment, in one SQLite file."""

    def __init__(self, path: str | Path):
        self.file = SQLiteFile(path, _SCHEMA)
        self._db = self.file.connect
        self._readers = threading.local()

    def create(self, name: str, scopes: list[str]) -> tuple[KeyInfo, str]:
        """A new key; the secret is returned here and nowhere else."""
        bad = [s for s in scopes if s not in SCOPES]
        if bad or not scopes:
            raise TailorError(f"scope {', '.join(bad) or '(none)'}: expected one or more of {', '.join(SCOPES)}")
        key_id = secrets.token_hex(6)
        key = f"tlr_{key_id}_{secrets.token_urlsafe(32)}"
        info = KeyInfo(key_id, name, tuple(dict.fromkeys(scopes)), time.time(), None)
        with self._db() as db:
            db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, NULL)",
                       (key_id, name, _hash(key), ",".join(info.scopes), info.created))
        return info, key

    def list(self) -> list[KeyInfo]:
        with self._db() as db:
            rows = db.execute("SELECT id, name, scopes, created, revoked FROM keys ORDER BY created").fetchall()
        return [KeyInfo(r[0], r[1], tuple(r[2].split(",")), r[3], r[4]) for r in rows]

    def revoke(self, id_or_name: str) -> int:
        """Revoke the key with this id, or every key with this name; how many were revoked."""
        with self._db() as db:
            n = db.execute("UPDATE keys SET revoked = ? WHERE (id = ? OR name = ?) AND revoked IS NULL",
                           (time.time(), id_or_name, id_or_name)).rowcount
        if n == 0:
            raise TailorError(f"no active key has the id or name {id_or_name!r}; see `tailor keys list`")
        return n

    def check(self, key: str) -> KeyInfo | None:
        """The key's record when it is valid and not revoked; None otherwise."""
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != "tlr":
            return None
        rows = self._reader().execute("SELECT id, name, hash, scopes, created, revoked FROM keys WHERE id = ?",
                                      (parts[1],)).fetchall()  # read to the end: no statement keeps a lock
        row = rows[0] if rows else None
        expected = row[2] if row else _hash("")  # compare anyway, so timing does not tell ids apart
        if not hmac.compare_digest(_hash(key), expected) or row is None or row[5] is not None:
            return None
        return KeyInfo(row[0], row[1], tuple(row[3].split(",")), row[4], row[5])

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (autocommit: each query sees every committed change)."""
        db = getattr(self._readers, "db", None)
        if db is None:
            db = self._readers.db = sqlite3.connect(self.file.path, timeout=10, isolation_level=None)
        return db
