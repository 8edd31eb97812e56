"""Build the fortune-topics corpus from Debian's `fortunes` package (fortune-mod's quotations and jokes,
as people wrote and collected them; version 1:1.99.1-7.3 on Debian 12).

    sudo apt-get install fortunes          # /usr/share/games/fortunes/<topic>
    python examples/fortune-topics/prepare.py

Five of its topic files are the classes. Each entry (the text between `%` lines) of 20 to 400 characters
becomes one record {"text", "topic"}; exact repeats are dropped, and 360 entries a topic are drawn with a
fixed seed, then dealt into train (70%), validation (10%) and test (20%) files, stratified by topic.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

TOPICS = ("art", "computers", "politics", "science", "work")
PER_TOPIC = 360
SHARES = {"train": 0.7, "validation": 0.1, "test": 0.2}


def entries(path: Path) -> list[str]:
    texts = []
    for raw in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
        text = re.sub(r"\s+", " ", raw.strip("%\n")).strip()
        if 20 <= len(text) <= 400:
            texts.append(text)
    return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fortunes", type=Path, default=Path("/usr/share/games/fortunes"),
                        help="the folder of the fortune files (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    missing = [t for t in TOPICS if not (args.fortunes / t).is_file()]
    if missing:
        print(f"{args.fortunes}: no fortune file for {', '.join(missing)}; install Debian's `fortunes` package "
              "(sudo apt-get install fortunes) or pass --fortunes", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {name: [] for name in SHARES}
    for topic in TOPICS:
        unique = [t for t in entries(args.fortunes / topic) if not (t.lower() in seen or seen.add(t.lower()))]
        if len(unique) < PER_TOPIC:
            print(f"{args.fortunes / topic}: {len(unique)} usable entries, {PER_TOPIC} needed", file=sys.stderr)
            return 2
        drawn = rng.sample(unique, PER_TOPIC)
        start = 0
        for name, share in SHARES.items():
            count = round(PER_TOPIC * share)
            splits[name] += [{"text": t, "topic": topic} for t in drawn[start:start + count]]
            start += count
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        rng.shuffle(rows)
        with open(args.out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        print(f"{args.out / f'{name}.jsonl'}: {len(rows)} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
