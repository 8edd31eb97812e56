"""A hard near-duplicate corpus with known clusters, and the cluster-level score of a deduplication.

Records are English-like word sequences from a first-order Markov chain over tinyshakespeare's words
(so unrelated records share common word pairs, as real text does): short ones (20-60 words) and long
ones (150-300). Injected at known positions:

- duplicates of an earlier record (they join its cluster): exact copies, and one-word substitutions,
  insertions and deletions;
- hard negatives (each its own cluster): an earlier record with a third of its words replaced, and
  siblings, records that share a long family phrase (40-60% of their words) with other records of the
  family, the way catalogue descriptions of one product line share boilerplate.

A deduplication is scored by cluster, whichever member it keeps: in a cluster of s records of which
k are kept, min(s - 1, s - k) removals are right, k - 1 duplicates were missed (k >= 1), and a cluster
with nothing kept counts one wrong removal; removing a record whose cluster has no other member is wrong.
"""

from __future__ import annotations

import collections
import json
import random
import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
DUPLICATE_KINDS = ("exact", "substitution", "insertion", "deletion")
# share of records (after the first 200) of each injected kind; the rest are fresh records
MIX = {"exact": 0.05, "substitution": 0.05, "insertion": 0.05, "deletion": 0.05, "third changed": 0.05,
       "sibling": 0.08}


class Words:
    """A first-order Markov chain over a text's lowercase words."""

    def __init__(self, text: str, rng: random.Random):
        tokens = re.findall(r"[a-z']+", text.lower())
        self.next: dict[str, list[str]] = collections.defaultdict(list)
        for a, b in zip(tokens, tokens[1:]):
            self.next[a].append(b)
        self.tokens, self.rng = tokens, rng

    def sentence(self, n: int) -> list[str]:
        word, out = self.rng.choice(self.tokens), []
        for _ in range(n):
            out.append(word)
            word = self.rng.choice(self.next.get(word) or self.tokens)
        return out

    def word(self) -> str:
        return self.rng.choice(self.tokens)


def _length(rng: random.Random) -> int:
    return rng.randint(20, 60) if rng.random() < 0.75 else rng.randint(150, 300)


def _edit(words: list[str], kind: str, gen: Words, rng: random.Random) -> list[str]:
    out, i = list(words), rng.randrange(len(words))
    if kind == "substitution":
        while out[i] == words[i]:
            out[i] = gen.word()
    elif kind == "insertion":
        out.insert(i, gen.word())
    elif kind == "deletion":
        del out[i]
    return out


def make_corpus(n: int, seed: int = 0) -> tuple[list[str], list[int], list[str]]:
    """(texts, cluster id of each, kind of each) for n records."""
    rng = random.Random(seed)
    gen = Words(CORPUS.read_text(encoding="utf-8"), rng)
    texts: list[list[str]] = []
    cluster: list[int] = []
    kinds: list[str] = []
    families: list[list[str]] = []
    for i in range(n):
        roll, kind = rng.random(), "fresh"
        for name, share in MIX.items():
            if i >= 200 and roll < share:
                kind = name
                break
            roll -= share
        if kind in DUPLICATE_KINDS or kind == "third changed":
            j = rng.randrange(i)
            words = list(texts[j])
            if kind == "third changed":
                for k in rng.sample(range(len(words)), len(words) // 3):
                    words[k] = gen.word()
            elif kind != "exact":
                words = _edit(words, kind, gen, rng)
            texts.append(words)
            cluster.append(cluster[j] if kind != "third changed" else i)
        elif kind == "sibling" and families and rng.random() < 0.7:
            phrase = rng.choice(families)
            own = gen.sentence(max(10, int(len(phrase) * rng.uniform(0.7, 1.5))))
            texts.append(own + phrase if rng.random() < 0.5 else phrase + own)
            cluster.append(i)
        elif kind == "sibling":  # the first of a new family
            length = _length(rng)
            phrase = gen.sentence(int(length * rng.uniform(0.4, 0.6)))
            families.append(phrase)
            texts.append(gen.sentence(length - len(phrase)) + phrase)
            cluster.append(i)
        else:
            texts.append(gen.sentence(_length(rng)))
            cluster.append(i)
        kinds.append(kind)
    return [" ".join(t) for t in texts], cluster, kinds


def write_jsonl(texts: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": str(i), "text": text}) + "\n")


def score(removed: set[int], cluster: list[int], kinds: list[str]) -> dict:
    """Cluster-level precision, recall and F1 of a set of removed record numbers, with a breakdown."""
    members: dict[int, list[int]] = collections.defaultdict(list)
    for i, c in enumerate(cluster):
        members[c].append(i)
    right = wrong = missed = clusters_right = clusters = 0
    for group in members.values():
        kept = sum(i not in removed for i in group)
        gone = len(group) - kept
        if len(group) > 1:
            clusters += 1
            clusters_right += kept == 1
            missed += max(kept - 1, 0)
        right += min(gone, len(group) - 1)
        wrong += gone - min(gone, len(group) - 1)
    precision = right / max(right + wrong, 1)
    recall = right / max(right + missed, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f1": f1, "clusters": clusters,
            "clusters_right": clusters_right, "wrong_removals": wrong,
            "hard_negatives": sum(k in ("third changed", "sibling") for k in kinds)}
