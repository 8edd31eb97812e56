"""Writes data/pairs.jsonl: requests for help, each with a polite answer (preferred) and a rude one (rejected).

Both answers name the same task, so only the manner tells them apart. Every record carries its `task`, and
the spec splits by it: the held-out pairs ask about tasks no training pair mentions. Seeded: the same file on
every machine.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

VERBS = {"fix": ["my bike", "the sink", "the fence", "a flat tyre", "the lamp"],
         "clean": ["the kitchen", "the windows", "the garage", "my shoes", "the oven"],
         "plan": ["a trip", "a party", "the week", "a garden", "a budget"],
         "cook": ["some rice", "a curry", "the dinner", "pancakes", "a soup"],
         "write": ["a letter", "a poem", "the report", "a speech", "an email"],
         "move": ["the sofa", "the boxes", "my desk", "the piano", "the plants"],
         "paint": ["the door", "a portrait", "the bedroom", "the shed", "a mural"],
         "learn": ["the guitar", "some French", "to swim", "chess", "to juggle"],
         "find": ["my keys", "a dentist", "the station", "a recipe", "cheap flights"],
         "build": ["a shelf", "a website", "a birdhouse", "a robot", "a raft"]}
ASKS = ["can you help me {t}?", "please help me {t}", "I need to {t}, any help?", "could you {t} with me?",
        "would you show me how to {t}?"]
POLITE = ["of course, I would be glad to help you {t}.", "sure, happy to help you {t}, thank you for asking.",
          "certainly! let us {t} together, step by step.", "gladly, here is how to {t}: start slowly.",
          "with pleasure, we can {t} right away."]
RUDE = ["no, {t} yourself.", "ugh, stop asking me to {t}.", "not my problem, go {t} alone.",
        "why would I {t} for you? leave me alone.", "figure out how to {t} on your own."]


def pairs(seed: int = 0) -> list[dict]:
    """One pair per (task, wording): 50 tasks x 5 wordings."""
    rng = random.Random(seed)
    rows = []
    for verb, objects in VERBS.items():
        for obj in objects:
            task = f"{verb} {obj}"
            for ask in ASKS:
                rows.append({"prompt": ask.format(t=task), "chosen": rng.choice(POLITE).format(t=task),
                             "rejected": rng.choice(RUDE).format(t=task), "task": task})
    return rows


if __name__ == "__main__":
    out = Path(__file__).parent / "data" / "pairs.jsonl"
    out.parent.mkdir(exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in pairs()))
    print(f"wrote {out}")
