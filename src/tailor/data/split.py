"""Deterministic train/validation/test assignment: by ratio, stratified by a field, and grouped so that
related records (near-duplicates, or one value of a group field) never straddle two splits."""

from __future__ import annotations

import random
from collections.abc import Iterable

import numpy as np

from tailor.artifacts import RESERVED_PREFIX
from tailor.data.clean.minhash import LSHIndex, MinHasher, optimal_bands
from tailor.data.sources.records import SPLIT_KEY
from tailor.spec.base import SPLITS
from tailor.spec.data import Split

NUM_PERM, NGRAM = 128, 5


class NearDuplicateGroups:
    """Union-find over MinHash LSH matches: records joined by near-duplicate pairs share a group."""

    def __init__(self, threshold: float, max_pairs: int = 1_000_000):
        self.hasher = MinHasher(NUM_PERM, NGRAM)
        self.index = LSHIndex(NUM_PERM, optimal_bands(threshold, NUM_PERM), threshold)
        self.parent: list[int] = []
        self.members: list[int] = []  # record number of each indexed signature
        self.pairs: list[tuple[int, int]] = []
        self.max_pairs = max_pairs

    def _root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def add(self, text: str) -> None:
        """Index the next record (records are numbered in the order they are added)."""
        n = len(self.parent)
        self.parent.append(n)
        sig = self.hasher.signature(text)
        if sig is None:
            return
        keys = self.index.keys(sig)
        for j in self.index.match(sig, keys):
            other = self.members[j]
            if len(self.pairs) < self.max_pairs:
                self.pairs.append((other, n))
            self.parent[self._root(n)] = self._root(other)
        self.index.add(sig, keys)
        self.members.append(n)

    def groups(self) -> np.ndarray:
        return np.array([self._root(i) for i in range(len(self.parent))], dtype=np.int64)


def assign(pinned: list[str | None], labels: list | None, groups: np.ndarray | None, split: Split) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test) per record.

    Pinned records keep their split. The others are cut into units (a group, or one record), units into
    strata (the label of their first record), and each stratum is shuffled by the seed and divided by the
    ratios, counting records. The same inputs always give the same answer.
    """
    n = len(pinned)
    out = np.zeros(n, dtype=np.int8)
    units: dict = {}
    for i, pin in enumerate(pinned):
        if pin:
            out[i] = SPLITS.index(pin)
        else:
            units.setdefault(groups[i] if groups is not None else i, []).append(i)
    strata: dict = {}
    for members in units.values():
        strata.setdefault(labels[members[0]] if labels is not None else None, []).append(members)
    rng = random.Random(split.seed)
    for members_list in strata.values():
        total = sum(len(m) for m in members_list)
        target = {name: round(total * getattr(split, name)) for name in ("validation", "test")}
        for name in target:
            if getattr(split, name) > 0 and target[name] == 0 and total >= 3:
                target[name] = 1
        target["train"] = total - target["validation"] - target["test"]
        order = list(range(len(members_list)))
        if split.shuffle:
            rng.shuffle(order)
            fill = ("test", "validation")        # the rest is train
        else:
            fill = ("train", "validation")       # contiguous: train first, then validation, then test
        rest = "train" if split.shuffle else "test"
        k = 0
        for name in fill:
            count = 0
            while k < len(order) and count < target[name]:
                members = members_list[order[k]]
                out[members] = SPLITS.index(name)
                count += len(members)
                k += 1
        for j in order[k:]:
            out[members_list[j]] = SPLITS.index(rest)
    return out


def cross_split_pairs(pairs: Iterable[tuple[int, int]], assignment: np.ndarray) -> int:
    """Near-duplicate pairs whose two records landed in different splits (leakage)."""
    return sum(int(assignment[a] != assignment[b]) for a, b in pairs)


def assign_splits(records: list[dict], split: Split) -> dict[str, list[dict]]:
    """In-memory form of `assign`: records by split name (stratify and group read record fields)."""
    pinned = [r.pop(SPLIT_KEY, None) for r in records]
    labels = [r.get(split.stratify) for r in records] if split.stratify else None
    groups = None
    if split.group == "near_duplicates":
        finder = NearDuplicateGroups(split.group_threshold)
        for r in records:
            finder.add(" ".join(str(v) for k, v in r.items() if isinstance(v, str) and not k.startswith(RESERVED_PREFIX)))
        groups = finder.groups()
    elif split.group:
        ids: dict = {}
        groups = np.array([ids.setdefault(r.get(split.group), len(ids)) for r in records], dtype=np.int64)
    codes = assign(pinned, labels, groups, split)
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for record, code in zip(records, codes):
        out[SPLITS[code]].append(record)
    return out
