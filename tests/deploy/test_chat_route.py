"""Chat data end to end: a run fine-tunes a Llama on ShareGPT conversations, evaluates its last turns, and the
chat route of a real server reads a conversation as exactly the ids the run trained the next turn after."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from tailor.deploy.server import create_app
from tailor.labels import IGNORE
from tailor.run import Pipeline
from tailor.spec import load_spec
from tailor.splits import load_split

from .conftest import running

COLOURS = ["red", "blue", "green"]


def conversations(n: int = 18) -> list[dict]:
    """Two-exchange ShareGPT conversations about item colours, a system message in every third."""
    rows = []
    for i in range(n):
        turns = [{"from": "human", "value": f"hello, what colour is item {i}"},
                 {"from": "gpt", "value": COLOURS[i % 3]},
                 {"from": "human", "value": "thanks"},
                 {"from": "gpt", "value": f"the answer is {COLOURS[i % 3]}"}]
        rows.append({"conversations": ([{"from": "system", "value": "be brief"}] if i % 3 == 0 else []) + turns,
                     "id": i})
    return rows


@pytest.fixture(scope="module")
def chat_data_run(tmp_path_factory, tiny_llama_dir) -> Path:
    root = tmp_path_factory.mktemp("chat-data")
    (root / "chats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in conversations()))
    spec = {"name": "chat-data",
            "problem": {"domain": "tests", "task": "chat", "output": "text",
                        "targets": [{"metric": "exact_match", "split": "test", "at_least": 0.0}]},
            "data": {"sources": [{"type": "files", "path": "chats.jsonl"}],
                     "fields": {"messages": "conversations"},
                     "split": {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 0}},
            "model": {"base": str(tiny_llama_dir), "adapt": {"lora": {"r": 4, "alpha": 8}}},
            "train": {"max_steps": 4, "batch_size": 4, "eval_every": 2, "eval_batches": 1,
                      "optimizer": {"lr": 3e-3}, "schedule": {"name": "constant", "warmup_steps": 0}},
            "evaluate": {"generation": {"max_new_tokens": 4}, "max_examples": 2}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return Pipeline(load_spec(root / "spec.yaml"), root / "runs").run()


def test_the_run_trains_assistant_turns_and_evaluates_the_last_one(chat_data_run):
    from tailor.tokenizer import Codec
    from tailor.tokenizer.chat import chat_example

    model = chat_data_run / "train" / "model"
    card = json.loads((model / "config.json").read_text())["tailor"]
    assert card["format"] == "chat" and card["fields"]["messages"] == "conversations"
    codec = Codec.load(model)
    assert codec.pad_id != codec.eos_id == codec.turn_end_id
    (record, *_) = load_split(chat_data_run / "data", "test")
    messages = json.loads(record["conversations"])
    ids, labels = chat_example(codec, messages)
    learnt = codec.tokenizer.decode([i for i, label in zip(ids, labels) if label != IGNORE],
                                    skip_special_tokens=False)
    assert learnt == f"{messages[-3]['content']}<|im_end|>{messages[-1]['content']}<|im_end|>"
    import pyarrow.parquet as pq

    rows = pq.read_table(chat_data_run / "evaluate" / "predictions.parquet").to_pylist()
    answered = [r for r in rows if r["split"] == "test" and r.get("predicted") is not None]
    assert answered and all(r["expected"].startswith("the answer is") for r in answered)
    assert all(json.loads(r["input"])[-1] == {"role": "user", "content": "thanks"} for r in answered)
    assert json.loads((chat_data_run / "train" / "summary.json").read_text())["steps"] == 4


def test_the_chat_route_reads_a_conversation_as_its_training_prefix(chat_data_run, home, keys):
    """The ids the server hands to its engine for conversation[:k] are the training ids before turn k."""
    from tailor.tokenizer import Codec
    from tailor.tokenizer.chat import chat_example

    model = chat_data_run / "train" / "model"
    codec = Codec.load(model)
    app = create_app(model, home=home)
    fmt = app.state.tailor.host.engine.backend.format
    seen: list[list[int]] = []
    encode = fmt.encode_chat
    fmt.encode_chat = lambda messages: seen.append(encode(messages)) or seen[-1]
    messages = json.loads(load_split(chat_data_run / "data", "train")[0]["conversations"])
    ids, labels = chat_example(codec, messages)
    starts = [k for k in range(1, len(ids)) if labels[k] != IGNORE and labels[k - 1] == IGNORE]
    turns = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    with running(app) as url:
        for start, k in zip(starts, turns, strict=True):
            res = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {keys['infer']}"},
                             json={"messages": messages[:k], "max_tokens": 3, "temperature": 0}, timeout=60)
            assert res.status_code == 200, res.text
            assert seen[-1] == ids[:start]
            assert res.json()["usage"]["prompt_tokens"] == start
    assert len(seen) == len(turns) == 2
