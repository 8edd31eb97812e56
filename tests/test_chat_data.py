"""Chat data through the data stage: OpenAI, ShareGPT and Alpaca records become one form of messages;
malformed conversations are refused with file:line and what was expected."""

from __future__ import annotations

import json

import pytest

from test_data import run, spec_for

from tailor.data.chat import conversation
from tailor.errors import TailorError
from tailor.spec import parse_spec
from tailor.splits import load_split

PRETRAINED = "model: {base: smollm2-135m}\n"
EXPECTED = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is the T20 kettle 1.7 l?"},
            {"role": "assistant", "content": "Yes, 1.7 litres."}]


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def messages_of(out) -> list:
    return [conversation(r["messages"]) for s in ("train", "validation", "test") for r in load_split(out, s)]


def chat_spec(tmp_path, path: str, fmt: str = "auto", extra: str = ""):
    fields = "{messages: messages}" if fmt == "auto" else f"{{messages: messages, chat_format: {fmt}}}"
    return spec_for(tmp_path, f"[{{type: files, path: {path}}}]", fields,
                    "  split: {train: 1.0, validation: 0.0, test: 0.0}\n" + extra + PRETRAINED)


def test_openai_sharegpt_and_alpaca_become_the_same_messages(tmp_path):
    write_jsonl(tmp_path / "openai.jsonl", [{"messages": EXPECTED, "id": 1}])
    write_jsonl(tmp_path / "sharegpt.jsonl", [{"messages": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Is the T20 kettle 1.7 l?"},
        {"from": "gpt", "value": "Yes, 1.7 litres."}], "id": 2}])
    write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Is the T20 kettle", "input": "1.7 l?",
                                             "output": "Yes, 1.7 litres.", "system": "Be brief.", "id": 3}])
    for name in ("openai", "sharegpt", "alpaca"):
        folder = tmp_path / name
        folder.mkdir()
        report, out = run(folder, chat_spec(tmp_path, f"{name}.jsonl", extra="  clean: []\n"))
        got = messages_of(out)
        expected = EXPECTED if name != "alpaca" else \
            [EXPECTED[0], {"role": "user", "content": "Is the T20 kettle\n\n1.7 l?"}, EXPECTED[2]]
        assert got == [expected], name
        row = load_split(out, "train")[0]
        assert "instruction" not in row and row["id"] in (1, 2, 3)


def test_stated_format_and_a_json_text_column(tmp_path):
    """A CSV column that holds the conversation as JSON text is read; a stated format is held to."""
    sharegpt = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    (tmp_path / "c.csv").write_text('messages,n\n"' + json.dumps(sharegpt).replace('"', '""') + '",1\n')
    _, out = run(tmp_path, chat_spec(tmp_path, "c.csv", "sharegpt", "  clean: []\n"))
    assert messages_of(out) == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    write_jsonl(tmp_path / "o.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(TailorError, match=r"o.jsonl:1: messages\[0\]: expected \{from, value\} \(sharegpt format\)"):
        run(tmp_path, chat_spec(tmp_path, "o.jsonl", "sharegpt"))


@pytest.mark.parametrize("rows, line, message", [
    ([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
      {"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}],
     2, r"messages\[1\]\.role: expected one of system, developer, user, assistant; got \"bot\""),
    ([{"messages": [{"from": "human", "value": "a"}, {"from": "gpt", "value": 3}]}],
     1, r"messages\[1\]\.value: expected a string, got 3"),
    ([{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}],
     1, r"messages\[1\]\.role: expected 'assistant' .*got 'user'"),
    ([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"}]}],
     1, r"messages: a conversation ends with an assistant turn"),
    ([{"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                    {"role": "assistant", "content": "b"}]}],
     1, r"messages\[1\]: a system message comes first"),
    ([{"messages": "hello"}], 1, r"messages: expected a list of messages \(or its JSON text\), got \"hello\""),
    ([{"instruction": "a", "output": ""}], 1, r"output: an Alpaca record needs a non-empty string 'output'"),
    ([{"text": "no conversation here"}], 1, r"missing field 'messages'"),
])
def test_malformed_conversations_name_file_line_and_expectation(tmp_path, rows, line, message):
    write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TailorError, match=rf"bad.jsonl:{line}: {message}"):
        run(tmp_path, chat_spec(tmp_path, "bad.jsonl"))


def test_on_error_skip_quarantines_malformed_conversations(tmp_path):
    write_jsonl(tmp_path / "mixed.jsonl", [{"messages": EXPECTED}, {"messages": [{"role": "user", "content": "x"}]}])
    report, out = run(tmp_path, chat_spec(tmp_path, "mixed.jsonl", extra="  on_error: skip\n"))
    assert report["rejected"] == 1 and report["kept"] == 1
    (rejected,) = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected["where"].endswith("mixed.jsonl:2") and "ends with an assistant turn" in rejected["reason"]


def test_cleaning_reaches_each_message_and_dedups_conversations(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "Ｈｉ"},
                                                     {"role": "assistant", "content": "ｈｅｌｌｏ"}]}] * 2)
    report, out = run(tmp_path, chat_spec(tmp_path, "d.jsonl", extra="  clean: [{normalize: {unicode: NFKC}}, "
                                                                     "{dedup: {}}]\n"))
    assert messages_of(out) == [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "hello"}]]
    assert report["dropped"] == 1


def test_spec_refuses_chat_data_without_a_chat_template_or_for_labels(tmp_path):
    base = "name: d\nproblem: {domain: d, task: t%s}\ndata:\n  sources: [{type: files, path: x.jsonl}]\n" \
           "  fields: {messages: messages}\n"
    with pytest.raises(TailorError, match="chat template"):
        parse_spec(base % "", "s.yaml", tmp_path)
    with pytest.raises(TailorError, match="problem.output: text"):
        parse_spec(base % ", output: label" + PRETRAINED, "s.yaml", tmp_path)
    with pytest.raises(TailorError, match="not several"):
        parse_spec(base.replace("{messages: messages}", "{messages: m, input: q, output: a}") % "" + PRETRAINED,
                   "s.yaml", tmp_path)
    with pytest.raises(TailorError, match="set `messages` too"):
        parse_spec(base.replace("{messages: messages}", "{text: t, chat_format: openai}") % "", "s.yaml", tmp_path)


def test_pii_redacts_every_message(tmp_path):
    write_jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user", "content": "I'm ann@example.com, order?"},
                                                     {"role": "assistant", "content": "Thanks, mailing ann@example.com"}]}])
    _, out = run(tmp_path, chat_spec(tmp_path, "p.jsonl", extra="  clean: [{pii: {kinds: [email]}}]\n"))
    (messages,) = messages_of(out)
    assert [m["content"] for m in messages] == ["I'm <EMAIL>, order?", "Thanks, mailing <EMAIL>"]
