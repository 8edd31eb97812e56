"""MinHash signatures over word n-grams and an LSH index that finds near-duplicates among them.

Shingles are hashed word n-grams of simplified text (lowercase, punctuation and digits folded, as
datatrove's MinHash does); each of the `num_perm` hash functions is a multiply-shift over 64 bits.
The index bands the signature; records sharing a band are candidates, confirmed (when `verify`) by
the share of equal signature values, the estimate of their Jaccard similarity, unless it falls clearly
(two standard errors) below the threshold.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_NON_WORD = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\d+")


def optimal_bands(threshold: float, num_perm: int) -> int:
    """Bands b (rows r = num_perm / b) whose S-curve best separates pairs above and below threshold."""
    best, best_err = 1, float("inf")
    xs = np.linspace(0, 1, 201)
    for b in (b for b in range(1, num_perm + 1) if num_perm % b == 0):
        r = num_perm // b
        p = 1 - (1 - xs ** r) ** b
        fp = np.trapezoid(np.where(xs < threshold, p, 0), xs)
        fn = np.trapezoid(np.where(xs >= threshold, 1 - p, 0), xs)
        if fp + fn < best_err:
            best, best_err = b, fp + fn
    return best


class MinHasher:
    """Text -> uint32 signature of length num_perm (None for text without words)."""

    def __init__(self, num_perm: int = 112, ngram: int = 5, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.ngram = ngram
        self.a = (rng.integers(1, 2**63, num_perm, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)  # odd
        self.b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
        self.mix = (rng.integers(1, 2**63, ngram, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)

    def shingles(self, text: str) -> np.ndarray:
        words = _DIGITS.sub("0", _NON_WORD.sub(" ", text.lower())).encode().split()
        if not words:
            return np.empty(0, dtype=np.uint64)
        h = np.fromiter((zlib.crc32(w) for w in words), dtype=np.uint64, count=len(words))
        n = min(self.ngram, len(h))
        count = len(h) - n + 1
        out = np.zeros(count, dtype=np.uint64)
        for k in range(n):  # an n-gram's hash mixes its word hashes position by position
            out += h[k:k + count] * self.mix[k]
        return np.unique(out)

    def signature(self, text: str) -> np.ndarray | None:
        sh = self.shingles(text)
        if not sh.size:
            return None
        return ((np.outer(sh, self.a) + self.b) >> np.uint64(32)).min(axis=0).astype(np.uint32)


class LSHIndex:
    """Banded signatures; `match` finds earlier signatures likely above the threshold."""

    def __init__(self, num_perm: int, bands: int, threshold: float, verify: bool = True, seed: int = 1):
        self.bands, self.rows = bands, num_perm // bands
        self.threshold, self.verify = threshold, verify
        # an estimate from num_perm hashes has standard error sqrt(t(1-t)/num_perm): a candidate is confirmed
        # unless its estimate is two standard errors below the threshold, so true matches near it survive
        self.bar = threshold - 2 * (threshold * (1 - threshold) / num_perm) ** 0.5
        self.tables: list[dict[int, int]] = [{} for _ in range(bands)]
        self.mult = np.random.default_rng(seed + 7).integers(1, 2**63, self.rows, dtype=np.uint64)
        self.sigs = np.zeros((1024, num_perm), dtype=np.uint32)
        self.size = 0

    def keys(self, sig: np.ndarray) -> list[int]:
        return (sig.reshape(self.bands, self.rows).astype(np.uint64) * self.mult).sum(axis=1).tolist()

    def match(self, sig: np.ndarray, keys: list[int]) -> list[int]:
        """Ids of stored signatures sharing a band with sig (and, when verifying, similar enough)."""
        found = {t[k] for t, k in zip(self.tables, keys) if k in t}
        if self.verify and found:
            found = {j for j in found if (self.sigs[j] == sig).mean() >= self.bar}
        return sorted(found)

    def add(self, sig: np.ndarray, keys: list[int]) -> int:
        """Store sig; return its id. Each band keeps the first id with that key."""
        if self.size == len(self.sigs):
            self.sigs = np.concatenate([self.sigs, np.zeros_like(self.sigs)])
        self.sigs[self.size] = sig
        for table, key in zip(self.tables, keys):
            table.setdefault(key, self.size)
        self.size += 1
        return self.size - 1
