"""Conversations in the formats people have, read into one form: a list of {role, content} messages.

OpenAI `messages` ([{role, content}]), ShareGPT `conversations` ([{from: human|gpt|system, value}]) and
Alpaca records (`instruction`, optional `input` and `system`, `output`) all become OpenAI-style messages
when the data stage reads them, so every later stage (tokenizer, train, evaluate, serving) reads one shape.
A conversation is a system message at most (first), then user and assistant turns in alternation, ending
with an assistant turn: the turn a model learns to write.
"""

from __future__ import annotations

import json

ROLES = ("system", "user", "assistant")
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant"}
ALPACA_KEYS = ("instruction", "input", "output", "system")


class ChatError(ValueError):
    """A record that is not a conversation of the expected format; the message says where and what was expected."""


def detect(value: object) -> str:
    """'openai' or 'sharegpt', from the keys of the first message."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        if "role" in value[0]:
            return "openai"
        if "from" in value[0]:
            return "sharegpt"
    raise ChatError("expected a list of messages, {role, content} (OpenAI) or {from, value} (ShareGPT); got "
                    f"{_shown(value)}")


def _shown(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _from_list(value: object, fmt: str, field: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ChatError(f"{field}: expected a non-empty list of messages, got {_shown(value)}")
    role_key, text_key, roles = ("role", "content", OPENAI_ROLES) if fmt == "openai" else \
        ("from", "value", SHAREGPT_ROLES)
    out = []
    for i, m in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(m, dict) or role_key not in m or text_key not in m:
            raise ChatError(f"{where}: expected {{{role_key}, {text_key}}} ({fmt} format), got {_shown(m)}")
        if m[role_key] not in roles:
            raise ChatError(f"{where}.{role_key}: expected one of {', '.join(roles)}; got {_shown(m[role_key])}")
        if not isinstance(m[text_key], str):
            raise ChatError(f"{where}.{text_key}: expected a string, got {_shown(m[text_key])}")
        out.append({"role": roles[m[role_key]], "content": m[text_key]})
    return out


def _from_alpaca(record: dict) -> list[dict]:
    for key in ("instruction", "output"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ChatError(f"{key}: an Alpaca record needs a non-empty string {key!r}; got "
                            f"{_shown(record.get(key))}")
    for key in ("input", "system"):
        if record.get(key) is not None and not isinstance(record[key], str):
            raise ChatError(f"{key}: expected a string, got {_shown(record[key])}")
    user = record["instruction"] + (f"\n\n{record['input']}" if (record.get("input") or "").strip() else "")
    system = [{"role": "system", "content": record["system"]}] if (record.get("system") or "").strip() else []
    return system + [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def check_turns(messages: list[dict], field: str) -> list[dict]:
    """The conversation, if its turns are in an order a chat template renders and a model learns from."""
    for i, m in enumerate(messages):
        if m["role"] == "system" and i > 0:
            raise ChatError(f"{field}[{i}]: a system message comes first, or not at all")
    turns = [(i, m) for i, m in enumerate(messages) if m["role"] != "system"]
    for k, (i, m) in enumerate(turns):
        expected = "user" if k % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise ChatError(f"{field}[{i}].role: expected {expected!r} (after the system message, turns alternate "
                            f"user, assistant, user, ...); got {m['role']!r}")
        if m["role"] == "assistant" and not m["content"].strip():
            raise ChatError(f"{field}[{i}].content: an assistant turn is empty; there is nothing to learn from it")
    if not turns or turns[-1][1]["role"] != "assistant":
        raise ChatError(f"{field}: a conversation ends with an assistant turn (the one the model learns to write); "
                        f"this one has {len(turns)} user/assistant turn(s) and ends with "
                        f"{turns[-1][1]['role'] if turns else 'no turn'!r}")
    return messages


def to_messages(record: dict, field: str, fmt: str) -> dict:
    """The record with `field` holding OpenAI-style messages, read from `fmt` (auto, openai, sharegpt, alpaca).

    An Alpaca record (instruction/input/output, with `auto` when `field` is absent) loses those keys to the
    messages. A record without `field` that is not Alpaca is returned as it is (the reader names what is missing).
    """
    if fmt == "alpaca" or (fmt == "auto" and record.get(field) is None and "instruction" in record):
        messages = _from_alpaca(record)
        record = {k: v for k, v in record.items() if k not in ALPACA_KEYS}
    elif record.get(field) is None:
        return record
    else:
        value = record[field]
        if isinstance(value, str):  # a column that holds the conversation as JSON text (CSV, Parquet)
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ChatError(f"{field}: expected a list of messages (or its JSON text), got {_shown(value)}") from None
        messages = _from_list(value, detect(value) if fmt == "auto" else fmt, field)
    record[field] = check_turns(messages, field)
    return record


def is_conversation(value: object) -> bool:
    """A list of messages with text, as the data stage holds a conversation (cleaning steps rewrite each text)."""
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                         for m in value)


def conversation(value: object) -> list[dict]:
    """A split's conversation cell as messages (Parquet holds it as JSON text)."""
    return json.loads(value) if isinstance(value, str) else value


def last_turn(messages: list[dict]) -> tuple[list[dict], str]:
    """(the conversation before its last assistant turn, that turn's text): what evaluation asks and expects."""
    return messages[:-1], messages[-1]["content"]
