"""Human-evaluation studies in SQLite: studies, the items raters see, and their ratings.

A study rates one run's answers, or compares two runs blind: for each item a seeded coin decides
which run's answer is shown as A, and ratings are stored against the runs, never the sides.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from tailor.artifacts import private_file
from tailor.errors import TailorError

LIKERT = (1, 2, 3, 4, 5)
CHOICES = ("a", "b", "tie")  # a winner, by run
DEFAULT_CRITERIA = ("fluency", "coherence", "relevance")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies(
  name TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('rate', 'ab')), criteria TEXT NOT NULL,
  winner INTEGER NOT NULL, run_a TEXT NOT NULL, run_b TEXT, split TEXT NOT NULL, seed INTEGER NOT NULL,
  created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items(
  id INTEGER PRIMARY KEY, study TEXT NOT NULL REFERENCES studies(name), position INTEGER NOT NULL,
  example INTEGER NOT NULL, prompt TEXT NOT NULL, reference TEXT, shown_a TEXT NOT NULL, shown_b TEXT,
  swapped INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS ratings(
  item INTEGER NOT NULL REFERENCES items(id), rater TEXT NOT NULL, question TEXT NOT NULL, value TEXT NOT NULL,
  source TEXT NOT NULL, created TEXT NOT NULL, PRIMARY KEY (item, rater, question));
"""


@dataclass(frozen=True)
class Study:
    name: str
    kind: str  # rate | ab
    criteria: tuple[str, ...]
    winner: bool
    run_a: str
    run_b: str | None
    split: str
    seed: int

    def questions(self) -> list[str]:
        """Every question a rater answers per item: a Likert score per criterion (per run in A/B), the winner."""
        if self.kind == "rate":
            return list(self.criteria)
        return [f"{c}:{side}" for c in self.criteria for side in ("a", "b")] + (["winner"] if self.winner else [])


@dataclass(frozen=True)
class Item:
    id: int
    position: int
    example: int
    prompt: str
    reference: str | None
    shown_a: str
    shown_b: str | None
    swapped: bool

    def run_side(self, shown: str) -> str:
        """The run ('a' or 'b') behind the response shown as 'A' or 'B'."""
        first = "b" if self.swapped else "a"
        return first if shown == "A" else ("a" if first == "b" else "b")

    def shown_side(self, run: str) -> str:
        return "A" if self.run_side("A") == run else "B"


@contextmanager
def connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection with the schema in place, committed on success, always closed."""
    con = sqlite3.connect(private_file(db), timeout=30)  # ratings and the texts rated: owner only
    try:
        con.executescript(SCHEMA)
        yield con
        con.commit()
    finally:
        con.close()


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def get_study(con: sqlite3.Connection, name: str) -> Study:
    row = con.execute("SELECT name, kind, criteria, winner, run_a, run_b, split, seed FROM studies WHERE name = ?",
                      (name,)).fetchone()
    if row is None:
        known = [r[0] for r in con.execute("SELECT name FROM studies ORDER BY name")]
        raise TailorError(f"no study {name!r}; studies: {', '.join(known) or '(none)'}")
    return Study(row[0], row[1], tuple(json.loads(row[2])), bool(row[3]), row[4], row[5], row[6], row[7])


def list_studies(con: sqlite3.Connection) -> list[dict]:
    rows = con.execute("SELECT s.name, s.kind, s.run_a, s.run_b, s.created, (SELECT COUNT(*) FROM items i WHERE "
                       "i.study = s.name), (SELECT COUNT(DISTINCT r.rater) FROM ratings r JOIN items i ON r.item = "
                       "i.id WHERE i.study = s.name) FROM studies s ORDER BY s.created").fetchall()
    return [dict(zip(("name", "kind", "run_a", "run_b", "created", "items", "raters"), r)) for r in rows]


def items(con: sqlite3.Connection, study: str) -> list[Item]:
    rows = con.execute("SELECT id, position, example, prompt, reference, shown_a, shown_b, swapped FROM items "
                       "WHERE study = ? ORDER BY position", (study,)).fetchall()
    return [Item(*r[:7], bool(r[7])) for r in rows]


def get_item(con: sqlite3.Connection, study: str, item_id: int) -> Item | None:
    return next((i for i in items(con, study) if i.id == item_id), None)


def _answered(split_rows: list[dict]) -> list[dict]:
    return [r for r in split_rows if r.get("predicted") is not None]


def create_study(con: sqlite3.Connection, name: str, run_a: Path, run_b: Path | None = None, split: str = "test",
                 n: int | None = 50, criteria: tuple[str, ...] = DEFAULT_CRITERIA, winner: bool = True,
                 seed: int = 0) -> Study:
    """Sample up to n answered examples of a run (or of two runs, blind A/B) into a new study."""
    from tailor.evaluate.predictions import read_predictions

    if not NAME.match(name):
        raise TailorError(f"study name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    if con.execute("SELECT 1 FROM studies WHERE name = ?", (name,)).fetchone():
        raise TailorError(f"study {name!r} exists; choose another name")
    for c in criteria:
        if not NAME.match(c) or c == "winner":
            raise TailorError(f"criterion {c!r}: use a short word like 'fluency' (not 'winner')")
    if run_b is None and not criteria:
        raise TailorError("a study of one run needs at least one criterion to score")
    rows_a = _answered([r for r in read_predictions(run_a) if r["split"] == split])
    if not rows_a:
        raise TailorError(f"{run_a}: no generated answers on split {split!r} to rate")
    rng = random.Random(seed)
    if run_b is None:
        pairs = [(r, None) for r in rows_a]
    else:
        rows_b = {(r["input"], r["expected"]): r for r in
                  _answered([r for r in read_predictions(run_b) if r["split"] == split])}
        pairs = [(r, rows_b[(r["input"], r["expected"])]) for r in rows_a if (r["input"], r["expected"]) in rows_b]
        if not pairs:
            raise TailorError(f"{run_a} and {run_b} answered no common example of split {split!r}")
    pairs = rng.sample(pairs, min(n, len(pairs))) if n else pairs
    study = Study(name, "rate" if run_b is None else "ab", tuple(criteria), winner and run_b is not None,
                  str(run_a), str(run_b) if run_b else None, split, seed)
    con.execute("INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (study.name, study.kind, json.dumps(list(criteria)), int(study.winner), study.run_a, study.run_b,
                 split, seed, _now()))
    for position, (a, b) in enumerate(pairs):
        swapped = b is not None and rng.random() < 0.5
        shown = (b, a) if swapped else (a, b)
        con.execute("INSERT INTO items (study, position, example, prompt, reference, shown_a, shown_b, swapped) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, position, a["index"], a["input"], a.get("expected"), shown[0]["predicted"],
                     shown[1]["predicted"] if shown[1] else None, int(swapped)))
    return study


def check_answer(study: Study, question: str, value: str, where: str) -> str:
    """The stored form of one answer; an error names where it came from and what is allowed."""
    if question not in study.questions():
        raise TailorError(f"{where}: {question!r} is not a question of study {study.name!r}; "
                          f"questions: {', '.join(study.questions())}")
    value = str(value).strip()
    if question == "winner":
        if value.lower() not in CHOICES:
            raise TailorError(f"{where}: winner {value!r}: expected one of {', '.join(CHOICES)}")
        return value.lower()
    if value not in {str(v) for v in LIKERT}:
        raise TailorError(f"{where}: {question} {value!r}: expected a score from 1 to 5")
    return value


def save_ratings(con: sqlite3.Connection, study: Study, item_id: int, rater: str, answers: dict[str, str],
                 source: str, where: str) -> int:
    """Store (or replace) one rater's answers for one item; returns how many were stored."""
    rater = rater.strip()
    if not rater or len(rater) > 64:
        raise TailorError(f"{where}: rater: a name of 1 to 64 characters is required")
    if not con.execute("SELECT 1 FROM items WHERE id = ? AND study = ?", (item_id, study.name)).fetchone():
        raise TailorError(f"{where}: item {item_id} is not in study {study.name!r}")
    checked = {q: check_answer(study, q, v, where) for q, v in answers.items()}
    con.executemany("INSERT OR REPLACE INTO ratings VALUES (?, ?, ?, ?, ?, ?)",
                    [(item_id, rater, q, v, source, _now()) for q, v in checked.items()])
    return len(checked)


def ratings(con: sqlite3.Connection, study: str) -> list[dict]:
    """Every rating of a study: item, rater, question, value."""
    rows = con.execute("SELECT r.item, r.rater, r.question, r.value FROM ratings r JOIN items i ON r.item = i.id "
                       "WHERE i.study = ? ORDER BY i.position, r.rater, r.question", (study,)).fetchall()
    return [dict(zip(("item", "rater", "question", "value"), r)) for r in rows]


def next_item(con: sqlite3.Connection, study: Study, rater: str) -> Item | None:
    """The first item this rater has not answered completely."""
    need = len(study.questions())
    done = dict(con.execute("SELECT item, COUNT(*) FROM ratings WHERE rater = ? GROUP BY item", (rater,)).fetchall())
    return next((i for i in items(con, study.name) if done.get(i.id, 0) < need), None)


def from_shown(study: Study, item: Item, answers: dict[str, str]) -> dict[str, str]:
    """Answers keyed as the rater saw them (fluency; or fluency_A, fluency_B and winner A, B or tie) -> by run."""
    out = {}
    for key, value in answers.items():
        if study.kind == "ab" and key[-2:] in ("_A", "_B"):
            out[f"{key[:-2]}:{item.run_side(key[-1])}"] = value
        elif key == "winner" and str(value).strip().upper() in ("A", "B"):
            out[key] = item.run_side(str(value).strip().upper())
        else:
            out[key] = value
    return out


def shown_questions(study: Study) -> list[str]:
    """The questions as a rater sees them (the keys from_shown accepts)."""
    if study.kind == "rate":
        return list(study.criteria)
    return [f"{c}_{side}" for c in study.criteria for side in ("A", "B")] + (["winner"] if study.winner else [])
