"""Generate the product-qa question/answer data from catalog.json.

Every question is composed from independent parts: an attribute frame ("how heavy is {p}"),
a way of naming the product ("the Voltra D18", "voltra d18"), an opening ("quick question: ")
and a closing ("? thanks"). A fixed 15% of (frame, opening, closing) combinations are held out
for the test split, so no test question's wording occurs in training: a model passes only if it
keys on the product and the attribute rather than on memorised sentences.

    python examples/product-qa/generate.py            # writes examples/product-qa/data/
    python examples/product-qa/generate.py --check    # fails if the committed files differ
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

FRAMES: dict[str, list[str]] = {
    "voltage": ["what voltage is {p}", "what is the voltage of {p}", "how many volts is {p}",
                "{p} voltage", "voltage of {p}", "what's the battery voltage on {p}"],
    "battery life": ["how long does the battery of {p} last", "what is the battery life of {p}",
                     "{p} battery life", "how long does {p} run on one charge",
                     "what's the runtime of {p}", "battery life of {p}"],
    "weight": ["how much does {p} weigh", "what is the weight of {p}", "how heavy is {p}",
               "{p} weight", "what does {p} weigh", "weight of {p}"],
    "max torque": ["what is the max torque of {p}", "how much torque does {p} have",
                   "{p} torque", "what torque does {p} deliver", "maximum torque of {p}"],
    "chuck size": ["what is the chuck size of {p}", "how big is the chuck on {p}",
                   "{p} chuck size", "chuck size of {p}", "what size chuck does {p} take"],
    "warranty": ["what is the warranty on {p}", "how long is the warranty for {p}",
                 "{p} warranty", "how many years of warranty does {p} come with",
                 "warranty of {p}", "what guarantee comes with {p}"],
    "price": ["how much is {p}", "what does {p} cost", "what is the price of {p}", "{p} price",
              "how much does {p} cost", "price of {p}"],
    "blade diameter": ["what is the blade diameter of {p}", "how big is the blade on {p}",
                       "{p} blade size", "blade diameter of {p}", "what size blade does {p} use"],
    "max speed": ["what is the max speed of {p}", "how fast does {p} spin", "{p} rpm",
                  "what rpm does {p} reach", "top speed of {p}"],
    "cutting depth": ["how deep can {p} cut", "what is the cutting depth of {p}",
                      "{p} cutting depth", "max cut depth of {p}", "how thick a board can {p} cut"],
    "max height": ["how tall is {p}", "what is the max height of {p}", "{p} height",
                   "how high does {p} reach", "working height of {p}"],
    "max load": ["what is the max load of {p}", "how much weight can {p} hold", "{p} load rating",
                 "what load is {p} rated for", "maximum load of {p}"],
    "material": ["what is {p} made of", "what material is {p}", "{p} material",
                 "which material is used for {p}", "is {p} made of metal or what"],
    "coverage": ["how much area does {p} cover", "what is the coverage of {p}", "{p} coverage",
                 "how far does a litre of {p} go", "coverage of {p}"],
    "drying time": ["how long does {p} take to dry", "what is the drying time of {p}",
                    "{p} drying time", "when is {p} dry", "drying time for {p}"],
    "finish": ["what finish does {p} have", "is {p} matt or glossy", "{p} finish",
               "what kind of finish is {p}", "finish of {p}"],
    "can size": ["how big is a can of {p}", "what size can does {p} come in", "{p} can size",
                 "how many litres in a can of {p}", "volume of {p}"],
    "brightness": ["how bright is {p}", "how many lumens is {p}", "{p} brightness",
                   "what is the light output of {p}", "brightness of {p}"],
    "water rating": ["is {p} waterproof", "what is the ip rating of {p}", "{p} ip rating",
                     "how water resistant is {p}", "water rating of {p}"],
    "cutting width": ["how wide does {p} cut", "what is the cutting width of {p}",
                      "{p} cutting width", "cut width of {p}", "how wide is the deck of {p}"],
    "grass box": ["how big is the grass box on {p}", "what is the grass box capacity of {p}",
                  "{p} grass box", "how much grass does {p} collect", "collector size of {p}"],
}

OPENINGS = ["", "hi, ", "hello, ", "hey there! ", "quick question: ", "can you tell me ",
            "could you tell me ", "i'd like to know ", "please tell me ", "do you know ",
            "excuse me, ", "one more thing: "]
CLOSINGS = ["?", " ?", "", "? thanks", "? thank you!", " please", ", please?", "??", "? cheers",
            " - need it for a job"]
TYPO_RATE = 0.25         # share of questions with one typo in the wording around the product
TEST_SHARE = 15          # percent of (frame, opening, closing) combinations held out for test
TRAIN_PER_FACT = 60
TEST_PER_FACT = 4


def mentions(name: str, category: str) -> list[str]:
    """The ways a customer names a product."""
    code = name.split(" ", 1)[1]
    return [name, f"the {name}", f"the {name} {category}", name.lower(), f"the {code}"]


def held_out(frame: str, opening: str, closing: str) -> bool:
    """Whether this combination of question parts belongs to the test split (stable hash)."""
    key = f"{frame}|{opening}|{closing}".encode()
    return int(hashlib.sha256(key).hexdigest(), 16) % 100 < TEST_SHARE


def typo(text: str, rng: random.Random) -> str:
    """One realistic slip in a word of text (never in the {p} slot): swap, drop or double a letter."""
    words = [i for i, w in enumerate(text.split(" ")) if len(w) > 3 and "{" not in w and w.isalpha()]
    if not words:
        return text
    parts = text.split(" ")
    i = rng.choice(words)
    w, j = parts[i], rng.randrange(1, len(parts[i]) - 1)
    parts[i] = rng.choice([w[:j] + w[j + 1] + w[j] + w[j + 2:], w[:j] + w[j + 1:], w[:j] + w[j] + w[j:]])
    return " ".join(parts)


def compose(frame: str, mention: str, opening: str, closing: str, rng: random.Random) -> str:
    """One question: opening + frame with the product + closing, first letter capitalised."""
    wording = opening + frame
    if rng.random() < TYPO_RATE:
        wording = typo(wording, rng)
    text = wording.format(p=mention) + closing
    return text[0].upper() + text[1:]


def generate(catalog: dict, seed: int = 0) -> dict[str, list[dict]]:
    """Return {"train": [...], "test": [...]} records; the same seed gives the same records."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {"train": [], "test": []}
    for product in catalog["products"]:
        names = mentions(product["name"], product["category"])
        for attribute in catalog["categories"][product["category"]]:
            combos = [(f, o, c) for f in FRAMES[attribute] for o in OPENINGS for c in CLOSINGS]
            for split, count in (("train", TRAIN_PER_FACT), ("test", TEST_PER_FACT)):
                pool = [x for x in combos if held_out(*x) == (split == "test")]
                for frame, opening, closing in rng.sample(pool, count):
                    out[split].append({
                        "question": compose(frame, rng.choice(names), opening, closing, rng),
                        "answer": product["specs"][attribute],
                        "product": product["name"],
                        "category": product["category"],
                        "attribute": attribute,
                    })
    train_questions = {r["question"] for r in out["train"]}
    leaked = [r["question"] for r in out["test"] if r["question"] in train_questions]
    if leaked:
        raise AssertionError(f"test questions also in train: {leaked[:3]}")
    return out


def render(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "data")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out")
    args = parser.parse_args(argv)
    catalog = json.loads((HERE / "catalog.json").read_text())
    for split, records in generate(catalog).items():
        path = args.out / f"{split}.jsonl"
        text = render(records)
        if args.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} differs from what generate.py writes", file=sys.stderr)
                return 1
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"{path}: {len(records)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
