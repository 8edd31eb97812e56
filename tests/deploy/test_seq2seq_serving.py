"""Encoder-decoder models (T5, BART) behind the serving engine and over HTTP, and what their exports do."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
import torch

from tailor.errors import TailorError

from .conftest import running

PROMPTS = ["red blue green", "amber", "white black red blue amber green white", "blue red", "green green amber"]


def card_folder(tmp_path: Path, base: Path, steps: int = 0) -> Path:
    """A model folder as the train stage writes it: the base's weights, its tokenizer, the model card, a manifest.

    `steps` of training on the copy task first: a random tiny model repeats one token, and answers that
    vary are what show tokens decoded in the right order from each row's own position.
    """
    from conftest import copy_pairs
    from tailor.manifest import write_manifest
    from tailor.models import compute_loss, save_model
    from tailor.models.pretrained import load_pretrained
    from tailor.tokenizer import Codec
    from tailor.train.seq2seq_batches import collate_seq2seq, encode_seq2seq

    folder = tmp_path / f"{base.name}-served"
    model = load_pretrained(str(base), "causal_lm")
    rows = copy_pairs(48, seed=1)
    codec = Codec.load(base)
    examples = encode_seq2seq([r["question"] for r in rows], [r["answer"] for r in rows], codec, 64)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        _, loss, _ = compute_loss(model, collate_seq2seq(examples[step * 8 % 48:][:8], codec.pad_id))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    save_model(model, folder,
               {"tailor": {"name": "copy", "format": "pairs", "output": "text",
                           "fields": {"input": "question", "output": "answer"}}})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(base / name, folder / name)
    write_manifest(folder)
    return folder


def greedy_reference(folder: Path, prompt: str, max_new_tokens: int) -> list[int]:
    """transformers' own greedy generate on the ids the engine gets: the answer tokens (with eos, if it stops)."""
    from transformers import AutoModelForSeq2SeqLM

    from tailor.tokenizer import Codec

    codec = Codec.load(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(str(folder)).eval()
    ids = torch.tensor([codec.prompt(prompt)])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, eos_token_id=codec.eos_id, pad_token_id=codec.pad_id)[0, 1:].tolist()
    return out[:out.index(codec.eos_id) + 1] if codec.eos_id in out else out


def answer_text(folder: Path, ids: list[int]) -> str:
    from tailor.tokenizer import Codec

    return Codec.load(folder).decode(ids).strip()


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_engine_answers_as_transformers_generate_does_batched(kind, tmp_path, tiny_t5_dir, tiny_bart_dir,
                                                            monkeypatch):
    """Prompts of different lengths, batched and joining at different steps, get the ids generate() gives each alone."""
    from tailor.inference import PromptFormat
    from tailor.inference.local import answer_in_process

    folder = card_folder(tmp_path, tiny_t5_dir if kind == "t5" else tiny_bart_dir, steps=40)
    expected = [greedy_reference(folder, prompt, 8) for prompt in PROMPTS]
    assert all(len(set(ids)) > 1 for ids in expected)  # answers that vary: the order of tokens is checked
    monkeypatch.setattr(PromptFormat, "decode", lambda self, ids: ",".join(map(str, ids)))  # the ids, not lossy text
    # two at a time: a prompt joins when another's answer ends, beside a row already decoding
    answers, _ = answer_in_process(folder, PROMPTS, 8, concurrency=2, warmup=0)
    assert [a.text for a in answers] == [",".join(map(str, ids)) for ids in expected]


def test_completions_and_chat_routes_serve_a_t5(tmp_path, tiny_t5_dir, home, keys):
    from tailor.deploy.server import create_app

    folder = card_folder(tmp_path, tiny_t5_dir, steps=40)
    expected = greedy_reference(folder, PROMPTS[0], 4)
    auth = {"Authorization": f"Bearer {keys['infer']}"}
    with running(create_app(folder, home=home)) as url:
        done = httpx.post(f"{url}/v1/completions", headers=auth, timeout=60,
                          json={"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0}).json()
        chat = httpx.post(f"{url}/v1/chat/completions", headers=auth, timeout=60,
                          json={"messages": [{"role": "user", "content": PROMPTS[0]}], "max_tokens": 4,
                                "temperature": 0}).json()
    from tailor.tokenizer import Codec

    text = answer_text(folder, expected)
    assert text and done["choices"][0]["text"] == text
    assert chat["choices"][0]["message"]["content"] == text  # one user message: exactly the completion prompt
    assert done["usage"]["prompt_tokens"] == chat["usage"]["prompt_tokens"] == len(Codec.load(folder).prompt(PROMPTS[0]))


def test_hf_export_of_a_seq2seq_model_reloads_with_the_same_logits(tmp_path, tiny_bart_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from tailor.deploy.export import run_export

    folder = card_folder(tmp_path, tiny_bart_dir)
    report = run_export(folder, "hf", tmp_path / "hf")
    assert report["architecture"] == "BartForConditionalGeneration"
    exported = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "hf")).eval()
    original = AutoModelForSeq2SeqLM.from_pretrained(str(folder)).eval()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    ids = torch.tensor([tok(PROMPTS[2])["input_ids"]])
    with torch.no_grad():
        a = exported(input_ids=ids, decoder_input_ids=ids[:, :3]).logits
        b = original(input_ids=ids, decoder_input_ids=ids[:, :3]).logits
    assert torch.equal(a, b)
    assert (tmp_path / "hf" / "manifest.json").is_file()


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8", "gguf"])
def test_onnx_and_gguf_exports_refuse_encoder_decoders_by_name(fmt, tmp_path, tiny_t5_dir):
    from tailor.deploy.export import run_export

    folder = card_folder(tmp_path, tiny_t5_dir)
    with pytest.raises(TailorError, match=f"--format {fmt}: .*encoder-decoder .*T5ForConditionalGeneration.*--format hf"):
        run_export(folder, fmt, tmp_path / fmt)


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_rows_joining_and_leaving_a_batch_get_the_logits_they_get_alone(kind, tmp_path, tiny_t5_dir, tiny_bart_dir):
    """A row prefilled while another is two steps in, then the other dropped: each row's logits are its own."""
    from tailor.inference.backends import load_backend
    from tailor.tokenizer import Codec

    folder = card_folder(tmp_path, tiny_t5_dir if kind == "t5" else tiny_bart_dir)
    backend, codec = load_backend(folder), Codec.load(folder)
    a, b = codec.prompt(PROMPTS[2]), codec.prompt(PROMPTS[1])
    forced = torch.tensor([5, 9, 13, 17])  # the tokens each row is fed, whatever it predicts

    def alone(ids: list[int], n: int) -> list[torch.Tensor]:
        state, logits = backend.prefill([ids])
        out = [logits[0]]
        for t in forced[:n - 1]:
            out.append(backend.step(state, t[None])[0])
        return out

    ref_a, ref_b = alone(a, 5), alone(b, 3)
    state, first = backend.prefill([a])
    backend.step(state, forced[:1])
    backend.step(state, forced[1:2])
    other, first_b = backend.prefill([b])
    state = state.merge(other)
    both = backend.step(state, torch.stack([forced[2], forced[0]]))
    torch.testing.assert_close(both[0], ref_a[3], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(both[1], ref_b[1], rtol=1e-4, atol=1e-4)
    state = state.select([1])  # a's answer ends: b decodes on alone, trimmed
    assert state.encoded.shape[1] == len(b) and state.decoded.shape[1] == 2
    torch.testing.assert_close(backend.step(state, forced[1:2])[0], ref_b[2], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(first_b[0], ref_b[0], rtol=1e-4, atol=1e-4)
