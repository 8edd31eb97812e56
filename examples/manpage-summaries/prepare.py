"""Build the manpage-summaries corpus from the Linux man-pages project as Debian ships it (`manpages-dev`
and `manpages`, 6.03-2 on Debian 12): each page's one-line summary (the text after `\\-` in NAME) is the
answer to its DESCRIPTION's first paragraph.

    sudo apt-get install manpages-dev manpages
    python examples/manpage-summaries/prepare.py

Pages that are only links (`.so`) are skipped; the paragraph keeps its first 80 words, the groff markup
removed; pages whose paragraph has under 8 words are left out. Each page goes to train (80%), validation
(10%) or test (10%) by a fixed seed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import subprocess
import sys
from pathlib import Path

PACKAGES = ("manpages-dev", "manpages")
MAX_WORDS, MIN_WORDS = 80, 8
SHARES = {"train": 0.8, "validation": 0.1, "test": 0.1}
ESCAPES = {r"\-": "-", r"\e": "\\", r"\&": "", r"\ ": " ", r"\~": " ", r"\|": "", r"\^": "", r"\(aq": "'",
           r"\(dq": '"', r"\(em": "—", r"\(en": "–", r"\(bu": "•", r"\(lq": '"', r"\(rq": '"', r"\(oq": "'",
           r"\(cq": "'", r"\(mu": "×", r"\(ga": "`", r"\(ti": "~", r"\(ha": "^", r"\(rs": "\\"}
BREAKS = re.compile(r"^\.(PP|P|LP|TP|IP|SH|SS|HP|RS|RE|nf|fi|EX|EE|in|sp|br|TS|TE|IP)\b")
ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}


def pages(package: str) -> list[Path]:
    try:
        listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return sorted(Path(p) for p in listed.splitlines()
                  if re.search(r"/man/man[0-9]/[^/]+\.gz$", p) and not Path(p).is_symlink())


def plain(text: str) -> str:
    text = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", text)      # font changes
    text = re.sub(r"\\\[([a-z]{2})\]", r"\\(\1", text)        # \[aq] is \(aq
    for escape, char in ESCAPES.items():
        text = text.replace(escape, char)
    text = re.sub(r"\\\*\(?..|\\\*\[[^]]*\]", "", text)       # strings
    return re.sub(r'\\"[^\n]*', "", text).replace("\\", "")   # comments, stray backslashes


def macro_text(line: str) -> str | None:
    """The words a formatting macro line prints (.B, .BR x y, ...); None for a line that prints nothing."""
    name, _, rest = line[1:].partition(" ")
    if name not in {"B", "I", "R", "SM", "SB"} | ALTERNATING:
        return None
    words = re.findall(r'"([^"]*)"|(\S+)', rest)
    words = [a or b for a, b in words]
    return ("" if name in ALTERNATING else " ").join(words)


def record(path: Path) -> dict | None:
    source = gzip.open(path, "rt", encoding="utf-8", errors="replace").read()
    if source.lstrip().startswith(".so "):
        return None
    lines = source.splitlines()
    try:
        name_at = next(i for i, line in enumerate(lines) if re.match(r"^\.SH\s+\"?NAME", line))
        desc_at = next(i for i, line in enumerate(lines) if re.match(r"^\.SH\s+\"?DESCRIPTION", line))
    except StopIteration:
        return None
    name_lines = []
    for line in lines[name_at + 1:]:
        if line.startswith(".SH"):
            break
        name_lines.append(line if not line.startswith(".") else (macro_text(line) or ""))
    names, sep, summary = " ".join(name_lines).partition("\\-")
    if not sep:
        return None
    paragraph: list[str] = []
    for line in lines[desc_at + 1:]:
        if not line.strip() or BREAKS.match(line):
            if paragraph:
                break
            continue
        text = line if not line.startswith(".") else macro_text(line)
        if text is not None:
            paragraph.append(text)
    words = re.sub(r"\s+", " ", plain(" ".join(paragraph))).split()
    summary = re.sub(r"\s+", " ", plain(summary)).strip()
    if len(words) < MIN_WORDS or not summary:
        return None
    section = path.parent.name.removeprefix("man")
    return {"page": f"{path.name.split('.')[0]}({section})", "names": re.sub(r"\s+", " ", plain(names)).strip(),
            "description": " ".join(words[:MAX_WORDS]), "summary": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    found = [p for package in PACKAGES for p in pages(package)]
    if not found:
        print(f"no man pages of {' or '.join(PACKAGES)} are installed: sudo apt-get install {' '.join(PACKAGES)}",
              file=sys.stderr)
        return 2
    records = [r for r in map(record, found) if r is not None]
    random.Random(args.seed).shuffle(records)
    args.out.mkdir(parents=True, exist_ok=True)
    start = 0
    for i, (name, share) in enumerate(SHARES.items()):
        end = len(records) if i == len(SHARES) - 1 else start + round(len(records) * share)
        with open(args.out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records[start:end])
        print(f"{args.out / f'{name}.jsonl'}: {end - start} records")
        start = end
    print(f"({len(found) - len(records)} of {len(found)} pages had no summary or too short a description)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
