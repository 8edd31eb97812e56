"""Feedback on answers, in SQLite: whether an answer was right, a rating, a correction.

Corrections (with the input they answer) become training data for `tailor retrain`; right/wrong
marks over a recent window give the online accuracy that the monitor exposes and alerts on.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tailor.deploy.store import SQLiteFile

_SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, created REAL NOT NULL,
    correct INTEGER, rating REAL, correction TEXT, input TEXT, model_version TEXT, key_id TEXT)"""


@dataclass(frozen=True)
class Issued:
    key_id: str
    input: str
    version: str
    at: float


class IssuedAnswers:
    """The request ids this server gave out recently, with the key that received each answer and its input.

    Feedback is taken only for these, and only from that key: otherwise any key could move online
    accuracy, fire or silence its alert, or slip "corrections" into retraining for answers it never got.
    Kept in memory (inputs are not written to disk unless a correction needs them), bounded in count
    and age.
    """

    def __init__(self, max_items: int = 10_000, max_age: float = 86_400.0):
        self.max_items, self.max_age = max_items, max_age
        self._items: collections.OrderedDict[str, Issued] = collections.OrderedDict()
        self._lock = threading.Lock()

    def add(self, request_id: str, key_id: str, input_text: str, version: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._items[request_id] = Issued(key_id, input_text, version, now)
            while len(self._items) > self.max_items or next(iter(self._items.values())).at < now - self.max_age:
                self._items.popitem(last=False)

    def get(self, request_id: str) -> Issued | None:
        """The answer's record, or None when this server did not issue the id within max_age."""
        with self._lock:
            item = self._items.get(request_id)
        return item if item is not None and item.at >= time.monotonic() - self.max_age else None


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
