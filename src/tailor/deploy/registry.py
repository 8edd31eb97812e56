"""A model registry in SQLite: numbered versions with their metrics and lineage, one champion per name.

Registering copies the model folder into the registry (hard links where possible) with a sha256
manifest, so what is served is exactly what was registered. Promotions are kept as a history:
`rollback` makes the champion before the current one champion again. A running server that
serves `registry:NAME` watches the champion and swaps to a new one without dropping requests.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from tailor.artifacts import link_tree
from tailor.deploy.store import SQLiteFile
from tailor.errors import TailorError

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS versions (name TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL,
       metrics TEXT NOT NULL, lineage TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (name, version))""",
    """CREATE TABLE IF NOT EXISTS promotions (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
       version INTEGER NOT NULL, at REAL NOT NULL, reason TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
       challenger INTEGER NOT NULL, champion INTEGER, metric TEXT NOT NULL, challenger_value REAL,
       champion_value REAL, promoted INTEGER NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL)""",
)


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    path: Path
    metrics: dict
    lineage: dict
    created: float
    champion: bool = False

    @property
    def tag(self) -> str:
        return f"{self.name}:v{self.version}"


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.file = SQLiteFile(self.root / "registry.db", *_SCHEMA)
        self._db = self.file.connect

    def add(self, model_dir: Path, name: str, metrics: dict | None = None, lineage: dict | None = None,
            reference: list[str] | None = None) -> Version:
        """Copy a model folder in as the next version of `name` (not yet champion)."""
        from tailor.deploy.drift import write_reference
        from tailor.manifest import verify_manifest, write_manifest

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise TailorError(f"{model_dir}: not a model folder (no config.json)")
        if (model_dir / "manifest.json").is_file():
            verify_manifest(model_dir)
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # numbers are handed out one at a time across processes
            number = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?",
                                (name,)).fetchone()[0]
            dest = self.root / "models" / name / f"v{number}"
            if dest.exists():
                raise TailorError(f"{dest} exists but is not registered; remove it")
            dest.parent.mkdir(parents=True, exist_ok=True)
            link_tree(model_dir, dest)
            (dest / "manifest.json").unlink(missing_ok=True)
            if reference:
                write_reference(reference, dest)
            write_manifest(dest)
            db.execute("INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?)",
                       (name, number, str(dest), json.dumps(metrics or {}), json.dumps(lineage or {}), time.time()))
        return self.get(name, number)

    def _version(self, row, champion: int | None) -> Version:
        return Version(row[0], row[1], Path(row[2]), json.loads(row[3]), json.loads(row[4]), row[5], row[1] == champion)

    def get(self, name: str, version: int) -> Version:
        with self._db() as db:
            row = db.execute("SELECT * FROM versions WHERE name = ? AND version = ?", (name, version)).fetchone()
        if row is None:
            raise TailorError(f"registry: {name}:v{version} does not exist; see `tailor registry list`")
        return self._version(row, self._champion_number(name))

    def list(self, name: str | None = None) -> list[Version]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM versions WHERE ? IS NULL OR name = ? ORDER BY name, version",
                              (name, name)).fetchall()
        champions = {n: self._champion_number(n) for n in {r[0] for r in rows}}
        return [self._version(r, champions[r[0]]) for r in rows]

    def _champion_number(self, name: str) -> int | None:
        with self._db() as db:
            row = db.execute("SELECT version FROM promotions WHERE name = ? ORDER BY id DESC LIMIT 1",
                             (name,)).fetchone()
        return row[0] if row else None

    def champion(self, name: str) -> Version | None:
        number = self._champion_number(name)
        return self.get(name, number) if number is not None else None

    def promote(self, name: str, version: int, reason: str = "promoted by hand") -> Version:
        self.get(name, version)  # exists
        with self._db() as db:
            db.execute("INSERT INTO promotions (name, version, at, reason) VALUES (?, ?, ?, ?)",
                       (name, version, time.time(), reason))
        return self.get(name, version)

    def rollback(self, name: str) -> Version:
        """Make the previous champion (the one before the current) champion again."""
        with self._db() as db:
            history = [r[0] for r in db.execute("SELECT version FROM promotions WHERE name = ? ORDER BY id",
                                                (name,)).fetchall()]
        if not history:
            raise TailorError(f"registry: {name} has no champion to roll back from")
        current = history[-1]
        earlier = [v for v in history[:-1] if v != current]
        if not earlier:
            raise TailorError(f"registry: {name}:v{current} is the only champion {name} has had; nothing to roll back to")
        return self.promote(name, earlier[-1], f"rollback from v{current}")

    def promotions(self, name: str) -> list[dict]:
        with self._db() as db:
            rows = db.execute("SELECT version, at, reason FROM promotions WHERE name = ? ORDER BY id", (name,)).fetchall()
        return [{"version": r[0], "at": r[1], "reason": r[2]} for r in rows]

    def record_decision(self, name: str, challenger: int, champion: int | None, metric: str,
                        challenger_value: float | None, champion_value: float | None, promoted: bool,
                        reason: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO decisions (name, challenger, champion, metric, challenger_value, champion_value, "
                       "promoted, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (name, challenger, champion, metric, challenger_value, champion_value, int(promoted), reason,
                        time.time()))

    def decisions(self, name: str) -> list[dict]:
        with self._db() as db:
            rows = db.execute("SELECT challenger, champion, metric, challenger_value, champion_value, promoted, reason, "
                              "at FROM decisions WHERE name = ? ORDER BY id", (name,)).fetchall()
        keys = ("challenger", "champion", "metric", "challenger_value", "champion_value", "promoted", "reason", "at")
        return [dict(zip(keys, r)) for r in rows]
