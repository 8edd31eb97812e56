"""Adapting a model for training: layer groups, freezing, gradual unfreezing, discriminative rates, LoRA.

Every model, ours or a HF one, is seen as a stack of layer groups, bottom to top: the
embeddings, each repeated block in order, and the top (final norm, pooler, task head). Freezing
fixes the embeddings and the lowest blocks; gradual unfreezing (ULMFiT) thaws the frozen
blocks one at a time from the top down; discriminative learning rates give each group down the
stack `lr_decay` times its upper neighbour's rate; LoRA (peft) trains low-rank adapters instead.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from tailor.errors import TailorError
from tailor.spec.model import Adapt, Lora

# a repeated block: GPT-2/ours `h.3.`, Llama `layers.3.`, BERT `layer.3.`; a recurrent layer `weight_ih_l3`
_BLOCK = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks)\.(\d+)\.|(?:^|\.)rnn\.\w+_l(\d+)(?:_reverse)?$")


@dataclass
class LayerGroups:
    embeddings: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    blocks: list[list[tuple[str, nn.Parameter]]] = field(default_factory=list)  # bottom to top
    top: list[tuple[str, nn.Parameter]] = field(default_factory=list)

    def ordered(self) -> list[tuple[str, list[tuple[str, nn.Parameter]]]]:
        """(name, parameters) from the top of the stack down."""
        named = [("top", self.top)] + [(f"layer {i}", b) for i, b in reversed(list(enumerate(self.blocks)))]
        return named + [("embeddings", self.embeddings)]


def layer_groups(model: nn.Module) -> LayerGroups:
    """Split the parameters into embeddings, blocks and top by name and registration order."""
    groups = LayerGroups()
    blocks: dict[int, list] = {}
    for name, p in model.named_parameters():
        m = _BLOCK.search(name)
        if m:
            blocks.setdefault(int(m.group(1) or m.group(2)), []).append((name, p))
        elif not blocks:
            groups.embeddings.append((name, p))
        else:
            groups.top.append((name, p))
    if not blocks:
        raise TailorError(f"{type(model).__name__}: found no repeated layers to freeze or give their own rates")
    groups.blocks = [blocks[i] for i in sorted(blocks)]
    return groups


def _set_trainable(params: list[tuple[str, nn.Parameter]], trainable: bool) -> None:
    for _, p in params:
        p.requires_grad_(trainable)


class Unfreezer:
    """Thaws the frozen blocks one at a time, top down, every `every` optimizer steps."""

    def __init__(self, frozen: list[tuple[str, list]], every: int):
        self.frozen, self.every, self.thawed = frozen, every, 0
        self.log: list[dict] = []

    def __call__(self, step: int) -> None:
        due = min(step // self.every, len(self.frozen))
        while self.thawed < due:
            name, params = self.frozen[self.thawed]
            _set_trainable(params, True)
            self.thawed += 1
            self.log.append({"step": step, "unfrozen": name})


@dataclass
class Plan:
    """What the training loop needs from adaptation: the model, its optimizer groups, a per-step hook."""

    model: nn.Module
    param_groups: list[dict]
    on_step: Callable[[int], None] | None
    summary: dict


def _head_and_task(model: nn.Module) -> tuple[str, bool]:
    return getattr(model, "tailor_head", "causal_lm"), bool(getattr(model, "tailor_hf", False))


def linear_names(model: nn.Module) -> list[str]:
    """Distinct last names of the linear layers: what LoRA target_modules can name."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def apply_lora(model: nn.Module, lora: Lora) -> nn.Module:
    """Wrap the model with LoRA adapters (peft); the task head, if fresh, trains in full."""
    from peft import LoraConfig, get_peft_model

    head, hf = _head_and_task(model)
    targets = lora.target_modules
    if targets != "auto" and not set(targets) & set(linear_names(model)):
        raise TailorError(f"model.adapt.lora.target_modules: {', '.join(targets)} name no linear layer of this model; "
                          f"its linear layers: {', '.join(linear_names(model))}")
    if targets == "auto":
        if hasattr(model, "rnn") or hasattr(getattr(model, "backbone", None), "rnn"):
            raise TailorError("model.adapt.lora: LoRA adapts linear layers and a recurrent model has none in its "
                              "recurrence; train it in full or freeze layers instead")
        targets = None if hf else ["c_attn"]  # None: peft's own choice for the architecture (attention q, v)
    task = {"classification": "SEQ_CLS", "regression": "SEQ_CLS", "token_classification": "TOKEN_CLS",
            "causal_lm": "CAUSAL_LM", "seq2seq_lm": "SEQ_2_SEQ_LM"}[head] if hf else None
    save = None if hf or head == "causal_lm" else ["score"]
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                        task_type=task, modules_to_save=save)
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise TailorError(f"model.adapt.lora.target_modules: {e}; linear layers of this model: "
                          f"{', '.join(linear_names(model))}") from None


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


def merged(model: nn.Module) -> nn.Module:
    """The model with LoRA adapters folded into its weights (a copy; the training model is unchanged)."""
    return copy.deepcopy(model).merge_and_unload() if is_peft(model) else model


def check_quantized(lora: Lora | None, device: torch.device) -> None:
    """QLoRA's needs on this machine: a CUDA device and bitsandbytes; a TailorError naming what is missing."""
    if lora is None or lora.quantize == "none":
        return
    missing = []
    if device.type != "cuda":
        missing.append(f"a CUDA GPU (this run's device is {device.type}; problem.constraints.device: auto or cuda)")
    if importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package (pip install bitsandbytes)")
    if missing:
        raise TailorError(f"model.adapt.lora.quantize: {lora.quantize} (QLoRA: a 4-bit base under LoRA) needs "
                          + " and ".join(missing) + "; without them use quantize: none (LoRA on the full-precision base)")


def dequantized(model: nn.Module, base_dir, lora: Lora) -> nn.Module:
    """A QLoRA model's trained adapters on the full-precision base they were trained over, on the CPU: what is
    merged and saved (merging into 4-bit weights would round the merged weights to 4 bits)."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    from tailor.models import load_model

    adapters = {k: v.detach().float().cpu() for k, v in get_peft_model_state_dict(model).items()}
    fresh = apply_lora(load_model(base_dir), lora)
    set_peft_model_state_dict(fresh, adapters)
    return fresh


_FRESH_HEAD = re.compile(r"(?:^|\.)(?:classifier|score)\.")  # HF task heads (BERT's classifier, Llama's score)


def _with_head_rate(model: nn.Module, scaled: list, factor: float) -> list:
    """The scaled groups with a fresh task head's parameters moved into a group of their own at `factor` times."""
    if _head_and_task(model)[0] == "causal_lm":
        return scaled  # a language model's output layer is pretrained (and often tied to the embeddings)
    head = {id(p) for n, p in model.named_parameters() if _FRESH_HEAD.search(n)}
    out = [(scale, [p for p in params if id(p) not in head]) for scale, params in scaled]
    moved = [p for _, params in scaled for p in params if id(p) in head]
    return out + ([(factor * max(s for s, _ in scaled), moved)] if moved else [])


def prepare(model: nn.Module, adapt: Adapt, weight_decay: float, steps_per_unit: dict[str, int]) -> Plan:
    """Apply LoRA (unless the model has it already) or freezing and build optimizer groups (with `lr_scale`)
    and the unfreezing hook."""
    total = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    if adapt.lora is not None and not is_peft(model):
        model = apply_lora(model, adapt.lora)
    groups = layer_groups(model) if adapt.freeze is not None or adapt.lr_decay != 1.0 else None
    on_step, frozen_names = None, []
    if adapt.freeze is not None:
        f = adapt.freeze
        n_frozen = len(groups.blocks) if f.bottom_layers == "all" else min(f.bottom_layers, len(groups.blocks))
        if f.embeddings:
            _set_trainable(groups.embeddings, False)
            frozen_names.append("embeddings")
        frozen = [(f"layer {i}", groups.blocks[i]) for i in reversed(range(n_frozen))]  # top down
        for name, params in frozen:
            _set_trainable(params, False)
        frozen_names += [name for name, _ in frozen]
        if f.unfreeze_every and frozen:
            on_step = Unfreezer(frozen, f.unfreeze_every * steps_per_unit[f.unit])
    pending = {id(p) for _, params in (on_step.frozen if on_step else []) for _, p in params}
    scaled: list[tuple[float, list[nn.Parameter]]] = []
    if groups is not None:
        for depth, (_, params) in enumerate(groups.ordered()):
            scaled.append((adapt.lr_decay ** depth, [p for _, p in params if p.requires_grad or id(p) in pending]))
    else:
        scaled.append((1.0, [p for p in model.parameters() if p.requires_grad]))
    if adapt.head_lr_scale != 1.0:
        scaled = _with_head_rate(model, scaled, adapt.head_lr_scale)
    param_groups = []
    for scale, params in scaled:  # weight decay on matrices only, not on norms, biases or other vectors
        for decay, chosen in ((weight_decay, [p for p in params if p.dim() >= 2]),
                              (0.0, [p for p in params if p.dim() < 2])):
            if chosen:  # thaws: the group holds layers that gradual unfreezing trains later
                param_groups.append({"params": chosen, "weight_decay": decay, "lr_scale": scale, "thaws": bool(pending)})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    summary = {"parameters": total, "trainable_at_start": trainable, "frozen": frozen_names,
               "lora": adapt.lora is not None, "lr_decay": adapt.lr_decay,
               "quantized": adapt.lora.quantize if adapt.lora is not None else "none"}
    return Plan(model, param_groups, on_step, summary)
