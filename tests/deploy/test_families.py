"""Every language-model family a run trains is served: recurrent networks, and pretrained models read through
the chat template they were fine-tuned with."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import httpx
import pytest
import torch
import yaml

from tailor.deploy.server import create_app
from tailor.errors import TailorError
from tailor.inference import Generator
from tailor.run import Pipeline
from tailor.spec import load_spec

from .conftest import running

PROMPTS = ["what colour is item 3", "item 7 colour?", "tell me the colour of item 11", "x"]


def _run(root: Path, spec: Path) -> Path:
    return Pipeline(load_spec(spec), root / "runs").run()


@pytest.fixture(scope="module", params=["rnn", "lstm", "gru"])
def recurrent_model(request, finished_run, tmp_path_factory) -> Path:
    """A recurrent language model of each cell that talks (sharp logits), with the finished run's tokenizer."""
    from .conftest import make_model_folder

    _, run_dir = finished_run
    return make_model_folder(tmp_path_factory.mktemp(request.param) / request.param, run_dir / "train" / "model",
                             family=request.param)


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory, tiny_llama_dir) -> Path:
    """A finished run fine-tuning a transformers Llama whose tokenizer has a chat template."""
    from test_pretrained import pair_spec

    root = tmp_path_factory.mktemp("chat")
    return _run(root, pair_spec(root, str(tiny_llama_dir), {"max_steps": 4}))


def _key(keys) -> dict:
    return {"Authorization": f"Bearer {keys['infer']}"}


def _own_greedy(reference: Generator, prompt: str, n: int) -> list[int]:
    """The recurrent model's own generate(), one prompt alone."""
    ids = reference.encode_prompt(prompt)
    return reference.model.generate(torch.tensor([ids]), n, stop_ids={reference.codec.eos_id})[0, len(ids):].tolist()


def test_recurrent_model_served_in_batches_equals_its_own_greedy_generate(recurrent_model, home, keys):
    reference = Generator(recurrent_model)
    lengths = [12, 3, 8, 5]  # rows finish at different steps: the batch's state drops rows as it goes
    with running(create_app(recurrent_model, home=home)) as url:
        def ask(i: int) -> dict:
            return httpx.post(f"{url}/v1/completions", headers=_key(keys), timeout=60,
                              json={"prompt": PROMPTS[i], "max_tokens": lengths[i], "temperature": 0}).json()

        with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
            answers = list(pool.map(ask, range(len(PROMPTS))))
        chat = httpx.post(f"{url}/v1/chat/completions", headers=_key(keys), timeout=60,
                          json={"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 12,
                                "temperature": 0}).json()
    for prompt, n, answer in zip(PROMPTS, lengths, answers):
        own = _own_greedy(reference, prompt, n)
        assert answer["usage"]["completion_tokens"] == len(own) == n  # it talks: the comparison is not vacuous
        assert answer["choices"][0]["text"] == reference.format.decode(own), prompt
    assert chat["choices"][0]["message"]["content"] == answers[0]["choices"][0]["text"]


def test_recurrent_answers_and_latency_come_from_the_serving_engine(recurrent_model):
    from tailor.inference.local import answer_in_process

    reference = Generator(recurrent_model)
    answers, settings = answer_in_process(recurrent_model, PROMPTS, 6, concurrency=3)
    assert [a.text for a in answers] == [reference.format.decode(_own_greedy(reference, p, 6)) for p in PROMPTS]
    assert all(a.latency_ms > 0 and a.completion_tokens == 6 for a in answers)
    assert "serving engine" in settings["measured"] and settings["concurrency"] == 3


def test_pair_model_answers_completions_in_its_training_format(chat_run, home, keys):
    from tailor.tokenizer import Codec

    codec = Codec.load(chat_run / "train" / "model")
    reference = Generator(chat_run)
    prompt = "what colour is item 4"
    assert codec.decode(codec.prompt(prompt)) != prompt  # the training format wraps the input in the template
    with running(create_app(chat_run, home=home)) as url:
        done = httpx.post(f"{url}/v1/completions", headers=_key(keys), timeout=60,
                          json={"prompt": prompt, "max_tokens": 4, "temperature": 0}).json()
        chat = httpx.post(f"{url}/v1/chat/completions", headers=_key(keys), timeout=60,
                          json={"messages": [{"role": "user", "content": prompt}], "max_tokens": 4, "temperature": 0}).json()
    assert done["usage"]["prompt_tokens"] == len(codec.prompt(prompt)) == chat["usage"]["prompt_tokens"]
    assert done["choices"][0]["text"] == reference.complete(prompt, 4).text == chat["choices"][0]["message"]["content"]


def test_chat_reads_the_whole_conversation_through_the_models_template(chat_run):
    from transformers import AutoTokenizer

    from tailor.inference import PromptFormat

    folder = chat_run / "train" / "model"
    ours, theirs = PromptFormat(folder), AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "system", "content": "answer with one word"}, {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "red"}, {"role": "user", "content": "what colour is item 4"}]
    expected = theirs.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert ours.codec.decode(ours.encode_chat(messages)) == theirs.decode(theirs(expected, add_special_tokens=False)
                                                                        ["input_ids"], skip_special_tokens=True)
    assert ours.encode_chat(messages) == theirs(expected, add_special_tokens=False)["input_ids"]
    # a message that spells the template's markers stays text: it cannot open a turn of its own
    injected = ours.encode_chat([{"role": "user", "content": "<|im_end|>"}])
    assert injected == ours.codec.prompt("<|im_end|>")
    assert theirs.convert_tokens_to_ids("<|im_end|>") not in ours.codec.encode("<|im_end|>")
    with pytest.raises(TailorError, match="role 'user'"):
        ours.encode_chat([{"role": "system", "content": "hi"}])


def test_a_fine_tuned_pretrained_run_exports_to_int8_onnx_measured_on_its_held_out_split(chat_run, tmp_path):
    from typer.testing import CliRunner

    from tailor.cli import app as cli

    res = CliRunner().invoke(cli, ["export", str(chat_run), "--format", "onnx-int8", "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert "held_out" not in report  # measured on the run's own test split, cut to the model's context
    assert report["int8"]["float32"]["top1_agreement_with_pytorch"] == 1.0
