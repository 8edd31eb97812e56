"""`near_dedup: {}` at its defaults: one-word edits of short records are duplicates, related records are not."""

import random

from tailor.data.clean import build_steps
from tailor.spec.data import Data

VOCAB = ["".join(random.Random(i).choices("abcdefghijklmnopqrstuvwxyz", k=random.Random(-i).randint(2, 9)))
         for i in range(3000)]
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCAB))]  # Zipf-like: common words recur across records


def default_step():
    """The step exactly as a spec with `near_dedup: {}` builds it."""
    (step,) = build_steps(Data(sources=[{"type": "files", "path": "x"}], clean=[{"near_dedup": {}}]))
    return step


def draw(rng: random.Random, n: int) -> list[str]:
    return rng.choices(VOCAB, WEIGHTS, k=n)


def one_word_edit(rng: random.Random, words: list[str], kind: int) -> list[str]:
    out, i = list(words), rng.randrange(len(words))
    if kind == 0:
        while out[i] == words[i]:
            out[i] = draw(rng, 1)[0]
    elif kind == 1:
        out.insert(i, draw(rng, 1)[0])
    else:
        del out[i]
    return out


def test_default_catches_one_word_edits_of_30_word_records():
    rng = random.Random(0)
    step = default_step()
    originals = [draw(rng, 30) for _ in range(200)]
    assert all(step({"text": " ".join(w)}) != "near duplicate" for w in originals)
    edits = [one_word_edit(rng, w, k % 3) for k, w in enumerate(originals)]  # substitutions, insertions, deletions
    caught = sum(step({"text": " ".join(w)}) == "near duplicate" for w in edits)
    assert caught >= 190, f"only {caught} of 200 one-word edits of 30-word records were found"


def test_default_keeps_hard_negatives():
    """A third of the words changed, or siblings sharing half their words as one long phrase: not duplicates."""
    rng = random.Random(1)
    step = default_step()
    kept = 0
    for n in [30] * 150 + [150] * 50:
        base = draw(rng, n)
        changed = list(base)
        for i in rng.sample(range(n), n // 3):
            changed[i] = draw(rng, 1)[0]
        phrase = draw(rng, n // 2)
        siblings = [draw(rng, n - n // 2) + phrase, draw(rng, n - n // 2) + phrase]
        kept += sum(step({"text": " ".join(w)}) != "near duplicate" for w in [base, changed, *siblings])
    assert kept >= 0.98 * 800, f"{800 - kept} of 800 distinct records were merged"
