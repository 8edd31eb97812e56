"""Personal data: emails, phone numbers, IP addresses and payment card numbers (Luhn-checked)."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from tailor.data.chat import is_conversation

PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"),
    "card": re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"),
    "ip": re.compile(r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4})*)(?![\w.:])"),
    "phone": re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w])"),
}


def luhn(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum of card numbers."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _valid(kind: str, text: str) -> bool:
    if kind == "card":
        digits = re.sub(r"\D", "", text)
        return 13 <= len(digits) <= 19 and luhn(digits)
    if kind == "ip":
        try:
            ipaddress.ip_address(text)
            return True
        except ValueError:
            return False
    if kind == "phone":
        digits = re.sub(r"\D", "", text)
        return 7 <= len(digits) <= 15 and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text)  # not an ISO date
    return True


class Pii:
    """Replace each found item by <EMAIL>, <PHONE>, <IP> or <CARD> (or drop the record); counts by kind."""

    name = "pii"
    parallel = True

    def __init__(self, fields: list[str], kinds: list[str], drop: bool = False):
        self.fields, self.drop = fields, drop
        self.kinds = [k for k in PATTERNS if k in kinds]  # cards before phones: a card number looks like one
        self.counts: Counter = Counter()

    def text(self, text: str) -> tuple[str, int]:
        found = 0
        for kind in self.kinds:
            def sub(m: re.Match, kind: str = kind) -> str:
                nonlocal found
                if not _valid(kind, m.group(0)):
                    return m.group(0)
                found += 1
                self.counts[kind] += 1
                return f"<{kind.upper()}>"
            text = PATTERNS[kind].sub(sub, text)
        return text, found

    def __call__(self, record: dict) -> dict | str:
        for field in self.fields:
            value = record.get(field)
            if isinstance(value, str):
                text, found = self.text(value)
                if found and self.drop:
                    return "contains personal data"
                record[field] = text
            elif is_conversation(value):  # each message of a conversation
                redacted = [(m, *self.text(m["content"])) for m in value]
                if self.drop and any(found for _, _, found in redacted):
                    return "contains personal data"
                record[field] = [{**m, "content": text} for m, text, _ in redacted]
        return record
