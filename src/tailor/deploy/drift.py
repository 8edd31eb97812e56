"""Input drift: how far recent prompts have moved from the training data, as a population stability index.

Three views of a prompt: its length in tokens, its rate of tokens never seen in training (the
unknown-token rate of a byte-level vocabulary), and its character-trigram profile hashed into
buckets. PSI = sum((p - q) * ln(p / q)) over bins; by custom 0.1 is a shift and 0.25 a large one.
"""

from __future__ import annotations

import collections
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

N_BUCKETS = 64  # hashed trigram buckets
EPS = 1e-4      # floor for empty bins, so that ln(p/q) stays finite


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two histograms (counts or shares)."""
    p = np.maximum(expected / max(expected.sum(), 1e-12), EPS)
    q = np.maximum(actual / max(actual.sum(), 1e-12), EPS)
    return float(np.sum((q - p) * np.log(q / p)))


def trigram_buckets(text: str) -> np.ndarray:
    counts = np.zeros(N_BUCKETS)
    t = f"  {text.lower()} "
    for i in range(len(t) - 2):
        counts[zlib.crc32(t[i:i + 3].encode()) % N_BUCKETS] += 1
    return counts


class DriftMonitor:
    """A reference profile of the training inputs and a window of recent prompts to compare with it."""

    def __init__(self, reference: list[str], tokenize: Callable[[str], list[int]], window: int = 200):
        self.tokenize = tokenize
        ids = [tokenize(t) for t in reference]
        lengths = np.array([len(x) for x in ids], dtype=float)
        self.edges = np.unique(np.quantile(lengths, np.linspace(0, 1, 11)[1:-1]))  # ~10 length bins
        self.ref_lengths = self._hist(lengths)
        self.ref_ngrams = sum((trigram_buckets(t) for t in reference), np.zeros(N_BUCKETS))
        self.seen = {i for x in ids for i in x}
        self.recent: collections.deque[tuple[int, int, np.ndarray]] = collections.deque(maxlen=window)

    def _hist(self, lengths: np.ndarray) -> np.ndarray:
        return np.bincount(np.searchsorted(self.edges, lengths, side="right"), minlength=len(self.edges) + 1)

    def observe(self, text: str) -> None:
        ids = self.tokenize(text)
        self.recent.append((len(ids), sum(i not in self.seen for i in ids), trigram_buckets(text)))

    def scores(self) -> dict[str, float] | None:
        """PSI of lengths and trigrams, and the unknown-token rate, over the window; None before 10 prompts."""
        if len(self.recent) < 10:
            return None
        lengths = np.array([r[0] for r in self.recent], dtype=float)
        tokens = max(int(lengths.sum()), 1)
        return {"length": psi(self.ref_lengths, self._hist(lengths)),
                "ngram": psi(self.ref_ngrams, sum(r[2] for r in self.recent)),
                "unknown_token_rate": sum(r[1] for r in self.recent) / tokens}

    @staticmethod
    def combined(scores: dict[str, float]) -> float:
        """The drift an alert compares with its bound: the larger of the two PSIs."""
        return max(scores["length"], scores["ngram"])

    def __repr__(self) -> str:
        return f"DriftMonitor(bins={len(self.edges) + 1}, vocabulary seen={len(self.seen)}, window={len(self.recent)})"


REFERENCE = "reference_inputs.jsonl"  # a sample of training inputs kept beside a registered model


def reference_texts(run_or_model: str | Path, limit: int = 2000) -> list[str] | None:
    """Training inputs to compare with: a model folder's reference sample, or a run's data/train.parquet."""
    from tailor.inference import resolve_model_dir

    folder = Path(run_or_model)
    model_dir = resolve_model_dir(folder)
    if (model_dir / REFERENCE).is_file():
        lines = (model_dir / REFERENCE).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines[:limit]]
    from tailor.splits import load_split
    from tailor import encryption

    for run_dir in (folder, model_dir.parent.parent):  # a run, or its train/model folder
        if encryption.exists(run_dir / "data" / "train.parquet"):
            card = json.loads((model_dir / "config.json").read_text()).get("tailor", {})
            fields = card.get("fields") or {}
            column = fields.get("input") or fields.get("text") or "text"
            from tailor.labels import as_list

            texts = [r.get(column) for r in load_split(run_dir / "data", "train")[:limit]]
            words = [as_list(t) for t in texts]  # token-label inputs are lists of words: served as one text
            return [" ".join(map(str, w)) if w is not None else str(t) for t, w in zip(texts, words) if t is not None] \
                or None
    return None


def write_reference(texts: list[str], model_dir: Path) -> None:
    """Keep a sample of training inputs with a model, so drift is measured wherever it is served."""
    from tailor.artifacts import atomic_write_text

    atomic_write_text(model_dir / REFERENCE, "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts))
