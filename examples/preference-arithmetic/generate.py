"""Writes data/pairs.jsonl: addition questions, each with its correct answer (preferred) and a near miss (rejected).

The rule to learn is arithmetic: a rejected answer differs from the correct sum by 1 to 10, in the same
words, so only the number tells them apart. Seeded: the same file on every machine.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ASKS = ["What is {a} + {b}?", "Add {a} and {b}.", "How much is {a} plus {b}?", "Compute {a} + {b}."]


def pairs(n: int = 600, seed: int = 0) -> list[dict]:
    """n distinct (a, b) questions with a correct and a wrong sum."""
    rng = random.Random(seed)
    seen, rows = set(), []
    while len(rows) < n:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if (a, b) in seen:
            continue
        seen.add((a, b))
        wrong = a + b + rng.choice([-1, 1]) * rng.randint(1, 10)
        rows.append({"prompt": rng.choice(ASKS).format(a=a, b=b), "chosen": f"{a} + {b} = {a + b}.",
                     "rejected": f"{a} + {b} = {wrong}."})
    return rows


if __name__ == "__main__":
    out = Path(__file__).parent / "data" / "pairs.jsonl"
    out.parent.mkdir(exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in pairs()))
    print(f"wrote {out}")
