"""Conversations through a chat template: the ids a model trains on, which of them it learns, and its prompts.

The template is rendered once per conversation with a marker in place of each message's text. The rendered
text is cut at the template's special tokens (`<|im_start|>`, `<|im_end|>`), which become their ids, and
at the start of every assistant message; each run between the cuts is tokenized as plain text, so that a
message that spells `<|im_end|>` cannot end a turn. This gives transformers' `apply_chat_template` ids
(which tokenize the whole text at once) wherever a message does not spell a special token or begin an
assistant turn with whitespace that would merge with the template's; and the ids before an assistant
message are exactly the prompt a server renders for the conversation up to it. Training and serving both
build their ids here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tailor.errors import TailorError
from tailor.labels import IGNORE

if TYPE_CHECKING:
    from tailor.tokenizer import Codec


def _pieces(codec: Codec, messages: list[dict], add_generation_prompt: bool) -> list[tuple[str, int | None]]:
    """The rendered conversation as (text, index of the message it is the text of; None for the template)."""
    marks = [f"\x00message{i}\x00" for i in range(len(messages))]
    text = codec.render([{"role": m["role"], "content": mark} for m, mark in zip(messages, marks)],
                        add_generation_prompt)
    for i, mark in enumerate(marks):
        if text.count(mark) > 1:
            raise TailorError(f"tokenizer chat_template writes message {i} ({messages[i]['role']}) more than once")
    pieces, at = [], 0
    for found in re.finditer("\x00message(\\d+)\x00", text):  # a template may leave a role's messages out
        i = int(found.group(1))
        pieces += [(text[at:found.start()], None), (messages[i]["content"], i)]
        at = found.end()
    return pieces + [(text[at:], None)]


def render_ids(codec: Codec, messages: list[dict], add_generation_prompt: bool) -> tuple[list[int], list[int | None]]:
    """Ids of the rendered conversation, and for each the index of the message whose text it spells (None:
    the template's). A token that spans template and message text belongs to the message, as transformers'
    assistant mask counts it."""
    ids: list[int] = []
    owners: list[int | None] = []
    run: list[tuple[str, int | None]] = []

    def flush() -> None:
        text = "".join(t for t, _ in run)
        spans, at = [], 0
        for t, owner in run:
            spans.append((at, at + len(t), owner))
            at += len(t)
        if text:
            enc = codec.tokenizer.encode_batch([text], add_special_tokens=False)[0]
            for i, (s, e) in zip(enc.ids, enc.offsets):
                ids.append(i)
                owners.append(next((o for a, b, o in spans if o is not None and (s < b and e > a or a <= s < b)),
                                   None))
        run.clear()

    for text, owner in _pieces(codec, messages, add_generation_prompt):
        if owner is not None:
            if messages[owner]["role"] == "assistant":
                flush()  # what the model writes starts a run of its own: its prompt ends here, whatever follows
            run.append((text, owner))
            continue
        for k, part in enumerate(codec.special_pattern.split(text) if codec.special_pattern else [text]):
            if k % 2:
                flush()
                ids.append(codec.tokenizer.token_to_id(part))
                owners.append(None)
            elif part:
                run.append((part, None))
    flush()
    return ids, owners


def segments(codec: Codec, messages: list[dict], add_generation_prompt: bool) -> list[tuple[list[int], int | None]]:
    """render_ids as runs of consecutive ids with the same owner."""
    ids, owners = render_ids(codec, messages, add_generation_prompt)
    out: list[tuple[list[int], int | None]] = []
    for i, owner in zip(ids, owners):
        if out and out[-1][1] == owner:
            out[-1][0].append(i)
        else:
            out.append(([i], owner))
    return out


def end_of_turn(codec: Codec, ids: list[int]) -> int:
    """How many of a template segment's ids close the message before it: up to its first special token."""
    for k, i in enumerate(ids):
        if i in codec.special_ids:
            return k + 1
    raise TailorError("tokenizer chat_template writes no special token (such as <|im_end|>) after a message: "
                      "a model trained on it could not learn where its turn ends")


def learnt_roles(loss_on: str) -> tuple[str, ...]:
    """train.loss_on as the roles whose turns are learnt (system never)."""
    return ("user", "assistant") if loss_on == "all" else ("assistant",)


def chat_example(codec: Codec, messages: list[dict], loss_on: str = "output") -> tuple[list[int], list[int]]:
    """(ids, labels) of a conversation: labels equal ids on the learnt turns (text + end-of-turn token), else IGNORE.

    loss_on: output (every assistant turn), all (user and assistant turns) or last (the last assistant turn).
    """
    roles = learnt_roles(loss_on)
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    ids: list[int] = []
    labels: list[int] = []
    learning = False  # the previous segment was a learnt message: its end-of-turn token is learnt too
    for seg, owner in segments(codec, messages, add_generation_prompt=False):
        if owner is None:
            cut = end_of_turn(codec, seg) if learning else 0
            labels += seg[:cut] + [IGNORE] * (len(seg) - cut)
            learning = False
        else:
            learning = messages[owner]["role"] in roles and (loss_on != "last" or owner == last)
            labels += seg if learning else [IGNORE] * len(seg)
        ids += seg
    return ids, labels


def fit(codec: Codec, messages: list[dict], block_size: int, loss_on: str = "output") -> tuple[list[int], list[int]]:
    """chat_example within block_size + 1 ids: the oldest exchanges are left out first (the system message
    stays); a last exchange still too long keeps its start."""
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    ids, labels = chat_example(codec, messages, loss_on)
    while len(ids) > block_size + 1 and len(turns) > 2:
        turns = turns[2:]
        ids, labels = chat_example(codec, system + turns, loss_on)
    return ids[: block_size + 1], labels[: block_size + 1]


def encode_chats(conversations: list, codec: Codec, block_size: int,
                 loss_on: str = "output") -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of each conversation (messages, or a split's JSON text of them), as the model, train and
    evaluate stages read chat data."""
    from tailor.data.chat import conversation

    if codec.chat_template is None:
        raise TailorError("data.fields.messages: the tokenizer has no chat template to render conversations "
                          "with; use a pretrained model whose tokenizer has one (e.g. smollm2-135m)")
    return [fit(codec, conversation(m), block_size, loss_on) for m in conversations]
