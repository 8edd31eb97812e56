"""Models: every family saved as a HF-style folder, and the one place where models meet the loop.

Families: the from-scratch transformer and recurrent networks (config.json + model.safetensors,
with an optional task head), and pretrained transformers models (a HF folder transformers
loads as it is). `compute_loss(model, batch)` serves them all, whatever the head.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_model as load_weights
from safetensors.torch import save_model as save_weights

from tailor.artifacts import atomic_write_json
from tailor.errors import TailorError
from tailor.models.family import Backbone
from tailor.models.heads import SequenceHead, TokenHead
from tailor.models.recurrent import Recurrent, RecurrentConfig
from tailor.models.transformer import Transformer, TransformerConfig
from tailor.labels import IGNORE
from tailor.models.losses import Objective
from tailor.spec.data import Fields
from tailor.spec.model import ModelSpec
from tailor.spec.problem import Constraints
from tailor.stage import Stage

MODEL_TYPE = "tailor-transformer"
FAMILIES = {MODEL_TYPE: (Transformer, TransformerConfig), "tailor-recurrent": (Recurrent, RecurrentConfig)}
LABEL_HEADS = ("classification", "token_classification")


def unwrap(model: nn.Module) -> nn.Module:
    """The model under a DistributedDataParallel and a LoRA (peft) wrapper.

    DDP, unlike torch.compile's and FSDP's wrappers, does not pass attribute reads through, so the
    head, labels and family would otherwise read as the defaults under several processes.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def head_of(model: nn.Module) -> str:
    return getattr(unwrap(model), "tailor_head", "causal_lm")


def is_seq2seq(model: nn.Module) -> bool:
    """An encoder-decoder language model (T5, BART): the encoder reads the input, the decoder writes the answer."""
    return head_of(model) == "seq2seq_lm"


def labels_of(model: nn.Module) -> list[str] | None:
    return getattr(unwrap(model), "tailor_labels", None)


def is_hf(model: nn.Module) -> bool:
    return bool(getattr(unwrap(model), "tailor_hf", False))


def with_head(backbone: nn.Module, head: str, labels: list[str] | None, pooling: str = "mean") -> nn.Module:
    """A from-scratch backbone with the task head `head` (a language model is its own head)."""
    if head == "causal_lm":
        model = backbone
    elif head == "token_classification":
        model = TokenHead(backbone, len(labels or []))
    else:
        model = SequenceHead(backbone, 1 if head == "regression" else len(labels or []), pooling)
    model.tailor_head, model.tailor_labels, model.tailor_pooling = head, labels, pooling
    return model


def backbone_of(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def save_model(model: nn.Module, folder: Path, extra: dict | None = None) -> None:
    """A HF-style folder: config.json + model.safetensors (LoRA merged in; tied weights stored once)."""
    from tailor.models.adapt import merged

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = merged(model)
    if is_hf(model):
        for key, value in (extra or {}).items():
            setattr(model.config, key, value)
        model.save_pretrained(str(folder))
        return
    backbone = backbone_of(model)
    model_type = next(t for t, (cls, _) in FAMILIES.items() if isinstance(backbone, cls))
    save_weights(model, str(folder / "model.safetensors"))
    atomic_write_json(folder / "config.json", {
        "model_type": model_type, "architectures": [type(model).__name__], **backbone.config.to_dict(),
        "head": head_of(model), "labels": labels_of(model), "pooling": getattr(model, "tailor_pooling", "mean"),
        **(extra or {})})


def load_model(folder: Path, device: str | torch.device = "cpu") -> nn.Module:
    """A model saved by save_model, or any HF model folder; only safetensors weights are read."""
    from tailor.models.pretrained import load_hf_folder

    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TailorError(f"{folder}: no config.json; not a model folder")
    config = json.loads(config_path.read_text())
    model_type = config.get("model_type")
    if model_type not in FAMILIES:
        if not model_type:
            raise TailorError(f"{config_path}: no model_type; expected {', '.join(FAMILIES)} or a transformers model")
        return load_hf_folder(folder, config, str(device))
    cls, config_cls = FAMILIES[model_type]
    fields = config_cls.__dataclass_fields__
    model = with_head(cls(config_cls(**{k: v for k, v in config.items() if k in fields})),
                      config.get("head", "causal_lm"), config.get("labels"), config.get("pooling", "mean"))
    weights = folder / "model.safetensors"
    if weights.is_file():
        load_weights(model, str(weights), device=str(device))
    else:  # encrypted at rest: decrypted in memory only
        from safetensors.torch import load as load_bytes

        from tailor.encryption import read_bytes

        result = model.load_state_dict(load_bytes(read_bytes(weights)), strict=False)
        # tied weights are stored once, under one of their names: a name may be missing if another of its tensor's came
        names: dict[int, set[str]] = {}
        for name, p in model.named_parameters(remove_duplicate=False):
            names.setdefault(id(p), set()).add(name)
        missing = set(result.missing_keys)
        unfilled = {n for group in names.values() if group <= missing for n in group}
        if result.unexpected_keys or unfilled or missing - {n for g in names.values() for n in g}:
            raise TailorError(f"{weights}: weights do not fit the config (missing {result.missing_keys[:3]}, "
                              f"unexpected {result.unexpected_keys[:3]})")
    return model.to(device)


def context_length(model: nn.Module) -> int:
    """Longest sequence the model is trained and run on."""
    from tailor.models.pretrained import context_of

    base = unwrap(model)
    return context_of(base) if is_hf(base) else backbone_of(base).config.block_size


def logits_of(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Task-head logits: (B, n_labels), (B, 1) for a score, (B, T, n_labels) for token labels."""
    if is_hf(model):
        return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    return model(batch["input_ids"], batch.get("attention_mask"))


def scored_positions(targets: torch.Tensor) -> torch.Tensor | None:
    """Flat indices of the positions a (B, T) next-token target scores; None when it scores them all."""
    keep = targets.reshape(-1) != IGNORE
    return None if bool(keep.all()) else keep.nonzero().squeeze(1)


@contextlib.contextmanager
def _output_layer_at(model: nn.Module, at: torch.Tensor):
    """Run a transformers model's output layer only on the hidden states at flat positions `at`.

    The layer is hooked rather than called by hand, so that whatever the model does to its logits
    afterwards (scaling, soft-capping) still applies; its logits come out (N, vocab).
    """
    head = unwrap(model).get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _, args: (args[0].flatten(0, -2).index_select(0, at), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def lm_logits(model: nn.Module, input_ids: torch.Tensor, scored_at: torch.Tensor | None = None) -> torch.Tensor:
    """A language model's logits: (B, T, vocab), or (N, vocab) at the flat positions `scored_at`."""
    if isinstance(backbone_of(unwrap(model)), Backbone):
        return model(input_ids, scored_at=scored_at)[0]
    gather = scored_at is not None and not hasattr(model, "_orig_mod")  # a compiled graph would not see the hook
    with _output_layer_at(model, scored_at) if gather else contextlib.nullcontext():
        logits = model(input_ids=input_ids, use_cache=False).logits
    if scored_at is not None and not gather:
        logits = logits.flatten(0, -2).index_select(0, scored_at)
    return logits


def compute_loss(model: nn.Module, batch: dict[str, torch.Tensor], objective: Objective | None = None,
                 scored: int | None = None,
                 scored_at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logits, mean loss over scored positions, number scored) for a batch on the model's device.

    The one place where a model family meets the training loop and the evaluation: next-token
    cross-entropy for language models, cross-entropy over labels (per sequence or per token),
    mean squared error for scores; `objective` (label smoothing, class weights) scores the outputs,
    plain cross-entropy by default. `scored`, when the caller counted it on the host, spares a
    device synchronisation. `scored_at` (scored_positions of the targets) lets a language model
    compute its output layer and loss only where the targets score, the largest saving when the
    loss is on short answers after long prompts over a large vocabulary; its logits are then
    (N, vocab) for those positions (a compiled transformers model still computes them all).
    """
    objective = objective or Objective()
    head = head_of(model)
    if head == "seq2seq_lm":
        return _seq2seq_loss(model, batch, objective, scored)
    if head == "causal_lm":
        targets = batch["targets"]
        if not isinstance(backbone_of(unwrap(model)), Backbone):  # a transformers model
            # a compiled graph would not see the hook: it keeps its full output layer
            gather = scored_at is not None and not hasattr(model, "_orig_mod")
            with _output_layer_at(model, scored_at) if gather else contextlib.nullcontext():
                # without a cache transformers reads packed rows from position_ids that restart at 0 and builds
                # a block-diagonal causal mask; with one (its default) attention would cross the examples of a row
                logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                               position_ids=batch.get("position_ids"), use_cache=False).logits
        else:
            gather = scored_at is not None
            # our families score themselves in forward (plain cross-entropy), so that under torch.compile the
            # loss and its float32 softmax over the vocabulary fuse with the output layer
            logits, loss = model(batch["input_ids"], targets=targets if objective.plain else None,
                                 position_ids=batch.get("position_ids"), scored_at=scored_at)
            if objective.plain:
                return logits, loss, scored if scored is not None else int((targets != IGNORE).sum())
        if gather:
            targets = targets.reshape(-1).index_select(0, scored_at)
        loss, n = objective.cross_entropy(logits, targets, scored)
        return logits, loss, n
    logits = logits_of(model, batch)
    labels = batch["labels"]
    loss, n = (objective.mse(logits.squeeze(-1), labels) if head == "regression"
               else objective.cross_entropy(logits, labels, scored))
    return logits, loss, n


def _seq2seq_loss(model: nn.Module, batch: dict[str, torch.Tensor], objective: Objective,
                  scored: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(logits (B, T, V), loss, scored) of an encoder-decoder: cross-entropy of the answer ids `labels` given the input.

    The decoder reads the labels shifted right by the model's own rule (its decoder start token first,
    padding for IGNORE), as transformers trains it; the loss is ours, so that label smoothing applies.
    """
    labels = batch["labels"]
    decoder_input_ids = unwrap(model).prepare_decoder_input_ids_from_labels(labels=labels)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                   decoder_input_ids=decoder_input_ids, use_cache=False).logits
    loss, n = objective.cross_entropy(logits, labels, scored)
    return logits, loss, n


def run_model(out: Path, *, base: str, head: str, arch, pooling: str, seed: int, fields: Fields, output: str,
              constraints: Constraints, max_time: float | None, data_dir: Path, tokenizer_dir: Path,
              progress=None) -> dict:
    """Build the initial network (seeded) into `out`: from scratch or from a pretrained base.

    base, head, arch, pooling, seed: the model section but `adapt` (which the train stage reads).
    """
    from tailor.models.build import build_model

    spec = ModelSpec(base=base, head=head, arch=arch, pooling=pooling, seed=seed)
    net, report = build_model(spec, fields, output, constraints, max_time, data_dir, tokenizer_dir)
    save_model(net, Path(out))
    atomic_write_json(Path(out) / "report.json", report)
    return report


STAGE = Stage("model", run=run_model, upstream=("data", "tokenizer"),
              reads={**{k: f"model.{k}" for k in ("base", "head", "arch", "pooling", "seed")},
                     "fields": "data.fields", "output": "problem.output",
                     "constraints": "problem.constraints", "max_time": "train.max_time"})
