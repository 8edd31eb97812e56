"""One SQLite file of the deployment's state (keys, feedback, registry): created with its tables on first use."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from tailor.artifacts import private_file


class SQLiteFile:
    """Short transactions on one database file, safe across threads and processes (each opens its own connection)."""

    def __init__(self, path: str | Path, *schema: str):
        self.path = private_file(path)  # SQLite gives its journal files the same mode
        with self.connect() as db:
            for statement in schema:
                db.execute(statement)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection whose work is committed (or rolled back on error) and which is closed afterwards."""
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:
                yield db
        finally:
            db.close()
