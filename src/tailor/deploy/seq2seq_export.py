"""Exports of encoder-decoder models (T5, BART): the transformers folder as it is; no ONNX or GGUF writer for them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import NoReturn

from tailor.errors import TailorError


def seq2seq_architecture(model_dir: Path) -> str | None:
    """The architecture of an encoder-decoder model folder (e.g. 'T5ForConditionalGeneration'); None for others."""
    from tailor.models.pretrained import SEQ2SEQ, head_from_config

    config = json.loads((Path(model_dir) / "config.json").read_text())
    if head_from_config(config) != SEQ2SEQ:
        return None
    return (config.get("architectures") or [config.get("model_type", "encoder-decoder")])[0]


def refuse_seq2seq(fmt: str, arch: str) -> NoReturn:
    """The error for an export format that writes decoder-only language models."""
    what = "llama.cpp's GGUF layout here is Llama's" if fmt == "gguf" else \
        "the ONNX writer traces one decoder-only graph with a key/value cache"
    raise TailorError(f"--format {fmt}: not supported for encoder-decoder models ({arch}): {what}; "
                      "export it with --format hf (a transformers folder that optimum and TGI read)")


def export_seq2seq_hf(model_dir: Path, out: Path) -> dict:
    """The trained transformers folder as it is (save_pretrained's safetensors, config, generation config), the
    tokenizer with a chat template that reads the last user message as training did, and a manifest."""
    from tailor.manifest import write_manifest
    from tailor.models import load_model

    model = load_model(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.do_sample = False
    model.save_pretrained(str(out), safe_serialization=True)
    shutil.copy2(model_dir / "tokenizer.json", out / "tokenizer.json")
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    tok_cfg.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    if "chat_template" not in tok_cfg:  # the encoder was trained on the input and the separator
        tok_cfg["chat_template"] = ("{{ (messages | selectattr('role', 'equalto', 'user') | "
                                    "list | last)['content'] }}" + tok_cfg.get("sep_token", "<|sep|>"))
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))
    write_manifest(out)
    return {"format": "hf", "architecture": model.config.architectures[0], "path": str(out)}
