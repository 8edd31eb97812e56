"""Near duplicates by MinHash LSH: the first record of each cluster is kept."""

from __future__ import annotations

from collections import Counter

from tailor.data.clean.minhash import LSHIndex, MinHasher, optimal_bands


class NearDedup:
    """Drop a record whose estimated Jaccard similarity to an earlier record reaches the threshold."""

    name = "near_dedup"
    parallel = False

    def __init__(self, fields: list[str], threshold: float = 0.7, num_perm: int = 112, ngram: int = 2,
                 bands: int | None = None, verify: bool = True, seed: int = 1):
        self.fields = fields
        self.hasher = MinHasher(num_perm, ngram, seed)
        self.index = LSHIndex(num_perm, bands or optimal_bands(threshold, num_perm), threshold, verify, seed)
        self.counts: Counter = Counter()

    def __call__(self, record: dict) -> dict | str:
        sig = self.hasher.signature("\n".join(str(record.get(f) or "") for f in self.fields))
        if sig is None:
            return record
        keys = self.index.keys(sig)
        found = self.index.match(sig, keys)
        # a dropped record stays in the index: a later edit of it joins its cluster (as a union-find over
        # all pairs would), not only records close to the cluster's first member
        self.index.add(sig, keys)
        return "near duplicate" if found else record
