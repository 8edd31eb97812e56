"""Shared fixtures: a tiny question/answer dataset, a spec for it, and one finished run."""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path

import pytest
import yaml

from tailor.spec import load_spec

def missing(message: str) -> None:
    """Skip (saying what to install) a test whose engine is not installed; in CI (.ci/run) fail instead."""
    if os.environ.get("TAILOR_REQUIRE_SYSTEM_DEPS") == "1":
        pytest.fail(message)
    else:
        pytest.skip(message)


def need_system(found: bool, what: str, packages: str) -> None:
    """A test that needs Debian packages: runs where they are installed (make test installs them where it can)."""
    if not found:
        missing(f"{what} not installed: sudo apt-get install -y {packages} (make test installs it where it can, "
                "as root or with passwordless sudo)")


COLOURS = ["red", "blue", "green", "black", "white", "amber", "violet", "grey"]


def write_pairs(path: Path, n_items: int = 12, per_item: int = 6, seed: int = 0) -> list[dict]:
    """Questions about the colour of numbered items, in a few wordings."""
    rng = random.Random(seed)
    frames = ["what colour is item {i}", "item {i} colour?", "tell me the colour of item {i}",
              "which colour does item {i} have", "colour of item {i} please", "is item {i} red or what"]
    rows = [{"question": rng.choice(frames).format(i=i) if k else frames[k % len(frames)].format(i=i),
             "answer": COLOURS[i % len(COLOURS)], "item": i}
            for i in range(n_items) for k in range(per_item)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


BASE_SPEC = {
    "name": "tiny",
    "problem": {"domain": "tests", "task": "answer colour questions", "output": "text",
                "targets": [{"metric": "exact_match", "split": "test", "at_least": 0.0},
                            {"metric": "loss", "split": "validation", "at_most": 0.001}]},
    "data": {"sources": [{"type": "files", "path": "data/*.jsonl"}],
             "fields": {"input": "question", "output": "answer"},
             "split": {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 0}},
    "tokenizer": {"type": "bpe", "vocab_size": 320},
    "model": {"arch": {"n_layer": 1, "n_head": 2, "n_embd": 32}},
    "train": {"max_steps": 12, "batch_size": 8, "eval_every": 6, "eval_batches": 2,
              "schedule": {"warmup_steps": 2}},
    "evaluate": {"generation": {"max_new_tokens": 4}, "max_examples": 8},
}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def make_spec(tmp_path):
    """make_spec(**overrides) -> path of a spec over a fresh tiny dataset in tmp_path."""
    def make(override: dict | None = None, name: str = "spec.yaml", data: bool = True) -> Path:
        if data and not (tmp_path / "data" / "items.jsonl").exists():
            write_pairs(tmp_path / "data" / "items.jsonl")
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merge(BASE_SPEC, override or {}), sort_keys=False))
        return path
    return make


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """(spec path, run dir) of one complete tiny run, shared by read-only tests."""
    from tailor.run import Pipeline

    root = tmp_path_factory.mktemp("finished")
    write_pairs(root / "data" / "items.jsonl")
    spec_path = root / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(BASE_SPEC, sort_keys=False))
    run_dir = Pipeline(load_spec(spec_path), root / "runs").run()
    return spec_path, run_dir


CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A local HF folder: a 2-layer BERT with random weights and MiniLM's WordPiece tokenizer."""
    import shutil

    from transformers import BertConfig, BertModel

    from tailor.presets import preset_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch_seed()
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy2(preset_path("minilm-l6") / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A local HF folder: a 2-layer Llama with random weights and a small byte-level BPE with a chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tailor.tokenizer import train_bpe

    folder = tmp_path_factory.mktemp("tiny-llama")
    words = ["what colour is item", "the answer is", "red", "blue", "green", "hello", "thanks"] * 30
    tok = train_bpe(iter(words), 300, 1)
    tok.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>",
                                 bos_token="<|im_start|>")
    hf.chat_template = CHAT_TEMPLATE
    hf.save_pretrained(folder)
    torch_seed()
    LlamaForCausalLM(LlamaConfig(vocab_size=len(hf), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                 tie_word_embeddings=True, initializer_range=0.2)).save_pretrained(folder)
    return folder


@pytest.fixture
def one_thread():
    """Steps of tiny models are dominated by thread synchronisation: one thread runs them fastest."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def torch_seed(seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)


COPY_WORDS = ["red", "blue", "green", "black", "white", "amber"]


def copy_pairs(n: int, seed: int = 0) -> list[dict]:
    """A small copy task: the output is the input's words reversed."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(COPY_WORDS) for _ in range(3)]
        rows.append({"question": " ".join(words), "answer": " ".join(reversed(words))})
    return rows


def tiny_seq2seq(folder: Path, kind: str) -> Path:
    """A local HF folder: a tiny random T5 or BART with a small byte-level BPE (eos 0, pad 1, sep 2)."""
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast, T5Config
    from transformers import T5ForConditionalGeneration

    from tailor.tokenizer import train_bpe

    tok = train_bpe(iter([r["question"] for r in copy_pairs(200)] * 3), 300, 1)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                 sep_token="<|sep|>")
    hf.save_pretrained(folder)
    torch_seed()
    ids = {"eos_token_id": 0, "pad_token_id": 1}
    if kind == "t5":
        model = T5ForConditionalGeneration(T5Config(
            vocab_size=len(hf), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            decoder_start_token_id=1, **ids))
    else:
        model = BartForConditionalGeneration(BartConfig(
            vocab_size=len(hf), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
            bos_token_id=0, decoder_start_token_id=0, forced_eos_token_id=None, init_std=0.2, **ids))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory) -> Path:
    return tiny_seq2seq(tmp_path_factory.mktemp("tiny-t5"), "t5")


@pytest.fixture(scope="session")
def tiny_bart_dir(tmp_path_factory) -> Path:
    return tiny_seq2seq(tmp_path_factory.mktemp("tiny-bart"), "bart")
