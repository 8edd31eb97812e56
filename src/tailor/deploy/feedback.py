"""Feedback on answers, in SQLite: whether an answer was right, a rating, a correction.

Corrections (with the input they answer) become training data for `tailor retrain`; right/wrong
marks over a recent window give the online accuracy that the monitor exposes and alerts on.
"""

from __future__ import annotations

import time
from pathlib import Path

from tailor.deploy.store import SQLiteFile

_SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, created REAL NOT NULL,
    correct INTEGER, rating REAL, correction TEXT, input TEXT, model_version TEXT, key_id TEXT)"""


class FeedbackStore:
    def __init__(self, path: str | Path):
        self.file = SQLiteFile(path, _SCHEMA)
        self._db = self.file.connect

    def add(self, request_id: str, correct: bool | None, rating: float | None, correction: str | None,
            input_text: str | None, model_version: str, key_id: str) -> int:
        with self._db() as db:
            cur = db.execute("INSERT INTO feedback (request_id, created, correct, rating, correction, input, "
                             "model_version, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (request_id, time.time(), None if correct is None else int(correct), rating,
                              correction, input_text, model_version, key_id))
            return int(cur.lastrowid)

    def accuracy(self, since: float) -> tuple[float | None, int]:
        """(share marked correct, how many were marked) among feedback newer than `since`."""
        with self._db() as db:
            right, n = db.execute("SELECT COALESCE(SUM(correct), 0), COUNT(correct) FROM feedback "
                                  "WHERE created >= ? AND correct IS NOT NULL", (since,)).fetchone()
        return (right / n if n else None), n

    def corrections(self) -> list[dict]:
        """Every correction that came with its input: {'input', 'output', 'request_id'}."""
        with self._db() as db:
            rows = db.execute("SELECT request_id, input, correction FROM feedback WHERE correction IS NOT NULL "
                              "AND input IS NOT NULL ORDER BY id").fetchall()
        return [{"request_id": r[0], "input": r[1], "output": r[2]} for r in rows]
