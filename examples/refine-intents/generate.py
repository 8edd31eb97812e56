"""Write data/tickets.jsonl: short support messages in four intents, for the `tailor refine` examples.

Each message mixes one or two of its intent's cue words with words every intent shares, in a few
wordings; `channel` is metadata the error analysis slices by. Deterministic (seed 0), so the
examples' figures repeat. With --shuffled-labels the intents are dealt out at random: nothing in
the text predicts them, which is the example where no lever can help.
Run: python examples/refine-intents/generate.py [--shuffled-labels]
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

CUES = {
    "billing": ["invoice", "charged", "payment", "bill", "card", "price"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "arrived", "shipped"],
    "login": ["password", "login", "account", "locked", "code", "username"],
    "refund": ["refund", "return", "money", "back", "reimburse", "cancelled"],
}
SHARED = ["please", "help", "my", "the", "today", "again", "order", "still", "need", "quickly", "hello", "thanks",
          "problem", "with", "issue", "urgent", "why", "is", "not", "working"]
FRAMES = ["{a} {s1} {b} {s2}", "{s1} {s2} {a} {s3}", "{s1} {a} {s2} {b} {s3}", "{a} {s1} {s2} {s3} {s4}"]
CHANNELS = ["email", "chat", "web form"]


def tickets(n_per_intent: int = 150, seed: int = 0, shuffled: bool = False) -> list[dict]:
    """n_per_intent messages per intent, in a fixed order; shuffled: the labels dealt out at random."""
    rng = random.Random(seed)
    rows = []
    for intent, cues in CUES.items():
        for _ in range(n_per_intent):
            shared = rng.sample(SHARED, 4)
            text = rng.choice(FRAMES).format(a=rng.choice(cues), b=rng.choice(cues), s1=shared[0], s2=shared[1],
                                             s3=shared[2], s4=shared[3])
            rows.append({"text": text, "intent": intent, "channel": rng.choice(CHANNELS)})
    if shuffled:
        labels = [r["intent"] for r in rows]
        rng.shuffle(labels)
        rows = [{**r, "intent": label} for r, label in zip(rows, labels)]
    rng.shuffle(rows)
    return rows


def main() -> None:
    shuffled = "--shuffled-labels" in sys.argv
    out = Path(__file__).resolve().parent / "data" / ("shuffled.jsonl" if shuffled else "tickets.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in tickets(shuffled=shuffled)), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
