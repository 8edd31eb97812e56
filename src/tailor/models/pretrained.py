"""Pretrained models: a preset, a HF folder, a GGUF file or a hub id, loaded with the head the task needs.

Weights come through transformers (GGUF files are dequantized into a normal trainable model);
a fresh head is sized from the data's labels; the result saves as a HF folder with safetensors
that transformers loads as it is.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from tailor.errors import TailorError
from tailor.spec.data import Fields
from tailor.presets import resolve_source

AUTO_CLASS = {"causal_lm": "AutoModelForCausalLM", "classification": "AutoModelForSequenceClassification",
              "regression": "AutoModelForSequenceClassification",
              "token_classification": "AutoModelForTokenClassification",
              # encoder-decoder (T5, BART): chosen from the base's config for problem.output text, never in the spec
              "seq2seq_lm": "AutoModelForSeq2SeqLM"}
SEQ2SEQ = "seq2seq_lm"


def quiet_transformers() -> None:
    """Silence transformers' own progress bars and load reports; Tailor shows its own progress."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def gguf_architecture(path: Path) -> str:
    """The `general.architecture` a GGUF file declares."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(str(path)).fields["general.architecture"]
    except (KeyError, ValueError, OSError) as e:
        raise TailorError(f"{path}: not a readable GGUF file with general.architecture ({e})") from None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def check_gguf(path: Path) -> None:
    """An error naming the architecture when transformers cannot turn this GGUF file into a model."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    arch = gguf_architecture(path)
    supported = [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]
    if arch not in supported:
        raise TailorError(f"{path}: GGUF architecture {arch!r} cannot be loaded; supported: {', '.join(supported)}")


def head_options(head: str, labels: list[str] | None) -> dict:
    """from_pretrained keyword arguments that give the model a fresh head of the right size."""
    if head in ("classification", "token_classification"):
        assert labels, "label heads need labels"
        return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                "label2id": {label: i for i, label in enumerate(labels)}}
    if head == "regression":
        return {"num_labels": 1, "problem_type": "regression"}
    return {}


def mark(model: nn.Module, head: str, labels: list[str] | None) -> nn.Module:
    """Record the task on the model and in its config, so a saved folder reloads with the same head."""
    model.tailor_head, model.tailor_labels, model.tailor_hf = head, labels, True
    model.config.tailor_head = head
    return model


def load_pretrained(source: str, head: str, labels: list[str] | None = None) -> nn.Module:
    """A pretrained model with a `head` (fresh unless the checkpoint has one that fits)."""
    import transformers

    quiet_transformers()
    folder, gguf = resolve_source(source)
    if gguf:
        check_gguf(Path(folder) / gguf)
    if head == "causal_lm" and not gguf and is_encoder_decoder(folder, source):
        head = SEQ2SEQ  # a text answer from a T5/BART-style base: its decoder writes it, reading the encoded input
    cls = getattr(transformers, AUTO_CLASS[head])
    try:
        model = cls.from_pretrained(folder, **({"gguf_file": gguf} if gguf else {}), **head_options(head, labels))
    except (OSError, ValueError, KeyError) as e:
        raise TailorError(f"model.base {source!r}: cannot load it with a {head} head ({e})") from None
    model = unquantized(model)
    return mark(model if model.dtype == torch.float32 else model.float(), head, labels)


def is_encoder_decoder(folder: str, source: str) -> bool:
    """Whether the base's config declares an encoder-decoder (T5, BART): it then answers through its decoder."""
    from transformers import AutoConfig

    try:
        return bool(getattr(AutoConfig.from_pretrained(folder), "is_encoder_decoder", False))
    except (OSError, ValueError, KeyError) as e:
        raise TailorError(f"model.base {source!r}: cannot read its config ({e})") from None


def unquantized(model: nn.Module) -> nn.Module:
    """A plain copy of a model loaded from GGUF.

    transformers dequantizes GGUF weights to float32 but keeps the model flagged as quantized,
    and then refuses to save it; the same weights in a fresh model of the same class save as a
    normal HF folder.
    """
    quant = getattr(model.config, "quantization_config", None)
    method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
    if str(getattr(method, "value", method)) != "gguf":
        return model
    config = model.config
    del config.quantization_config
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    return plain


def head_from_config(config: dict) -> str:
    """The head of a saved HF folder: the one Tailor recorded, else read from its architecture name."""
    if config.get("tailor_head"):
        return config["tailor_head"]
    arch = (config.get("architectures") or [""])[0]
    if config.get("is_encoder_decoder") and arch.endswith("ForConditionalGeneration"):
        return SEQ2SEQ
    if arch.endswith("ForSequenceClassification"):
        return "regression" if config.get("problem_type") == "regression" else "classification"
    if arch.endswith("ForTokenClassification"):
        return "token_classification"
    return "causal_lm"


def load_hf_folder(folder: Path, config: dict, device: str = "cpu") -> nn.Module:
    """A HF model folder (as save_model writes it, or any other) with the head its config names."""
    import transformers

    quiet_transformers()
    head = head_from_config(config)
    try:
        model = getattr(transformers, AUTO_CLASS[head]).from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as e:
        raise TailorError(f"{folder}: cannot load the model ({e})") from None
    labels = None
    if head in ("classification", "token_classification"):
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return mark(model, head, labels).to(device)


def context_of(model: nn.Module) -> int:
    """Longest sequence to train on: the size Tailor chose at the model stage, else the model's positions."""
    config = model.config
    return int(getattr(config, "tailor_block_size", None) or getattr(config, "max_position_embeddings", 512))


def load_quantized(folder: Path, device: torch.device) -> nn.Module:
    """A saved HF folder with its linear weights in 4-bit NF4 (bitsandbytes, double quantization, bf16
    compute), prepared for training adapters on it as PEFT's prepare_model_for_kbit_training does (QLoRA)."""
    import json

    import transformers
    from peft import prepare_model_for_kbit_training

    quiet_transformers()
    config = json.loads((Path(folder) / "config.json").read_text())
    head = head_from_config(config)
    quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                            bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16)
    try:
        model = getattr(transformers, AUTO_CLASS[head]).from_pretrained(
            str(folder), quantization_config=quant, dtype=torch.bfloat16, device_map={"": device.index or 0})
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise TailorError(f"{folder}: cannot load the model in 4-bit ({e})") from None
    # norms and the fresh head in float32, inputs that carry gradients into the adapters, activation checkpointing
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if head in (
        "classification", "token_classification") else None
    return mark(model, head, labels)


def require_pairs(fields: Fields) -> None:
    """An error unless the data is input/output pairs, the only form an encoder-decoder is trained on here."""
    if fields.input is None or fields.output is None:
        given = "data.fields.text" if fields.text is not None else "data.fields.messages"
        raise TailorError(f"{given}: an encoder-decoder model.base (T5, BART) learns input -> output pairs; "
                          "set data.fields.input and data.fields.output")
