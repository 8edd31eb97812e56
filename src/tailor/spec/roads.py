"""Training defaults that follow the road taken: scratch, full fine-tune, head only, LoRA, QLoRA, preference.

One table, read when a spec is validated: every `train` value a road names and the spec leaves
out is set to the road's value, and the spec remembers which (and why) so that `tailor spec show`
marks them. The train stage then reads the resolved `train` section like any other, so its cache
key changes with the road. Imports without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tailor.spec.model import Adapt
from tailor.spec.train import PREFERENCE_OBJECTIVES, EarlyStopping, Train

# Where the values come from; each row of the table names one of these.
NANOGPT = "nanoGPT / GPT-3 (Brown et al. 2020): AdamW betas (0.9, 0.95), wd 0.1, cosine to 10%"
BERT = "BERT (Devlin et al. 2019) and HF Trainer defaults"
ROBERTA = "RoBERTa GLUE fine-tuning (Liu et al. 2019): 6% warmup"
HEAD = "a fresh head on frozen features: Adam's own rate (Kingma & Ba 2015), nothing pretrained to protect"
LORA = "LoRA (Hu et al. 2021) as PEFT and QLoRA (Dettmers et al. 2023) train it"
QLORA = "QLoRA (Dettmers et al. 2023)"
FRESH_HEAD = ("a fresh head learns at the head-only road's 1e-3, 20 x the pretrained body's 5e-5, as discriminative "
              "fine-tuning (ULMFiT, Howard & Ruder 2018) gives each layer group its own rate")
TRL_DPO = "TRL's DPOConfig (learning_rate 1e-6, 20x under HF Trainer's 5e-5: the policy starts at its reference)"
HANDBOOK = ("the alignment handbook's zephyr-7b-beta DPO recipes (Tunstall et al. 2023): 5e-6 with QLoRA adapters, "
            "10% warmup")
PADDING = "pretrained inputs vary in length: length-grouped batches (HF group_by_length) skip the padding"
EARLY = ("HF Trainer's EarlyStoppingCallback with load_best_model_at_end: a pretrained model fits a small set in a few "
         "epochs, so the budget is a ceiling; 5 validation passes without a better loss end the run")


@dataclass(frozen=True)
class Road:
    name: str                               # scratch | full fine-tune | head only | LoRA | QLoRA | preference[, LoRA]
    values: tuple[tuple[str, Any, str], ...]  # (path under train, value, source), applied in order


_FINE_TUNE_SCHEDULE = (("schedule.name", "linear", BERT), ("schedule.min_lr_ratio", 0.0, BERT),
                       ("schedule.warmup_steps", None, ROBERTA))
_STOP_EARLY = ("early_stopping", EarlyStopping(patience=5), EARLY)

ROADS = {road.name: road for road in (
    Road("scratch", (
        ("optimizer.lr", 1e-3, NANOGPT), ("optimizer.weight_decay", 0.1, NANOGPT),
        ("optimizer.betas", (0.9, 0.95), NANOGPT), ("schedule.name", "cosine", NANOGPT),
        ("schedule.warmup_steps", 100, NANOGPT), ("schedule.min_lr_ratio", 0.1, NANOGPT),
        ("group_by_length", False, "scratch examples of the demo and tests keep their batches"))),
    Road("full fine-tune", (
        ("optimizer.lr", 5e-5, BERT + ": lr in {5e-5, 3e-5, 2e-5}"), ("optimizer.weight_decay", 0.01, BERT),
        ("adapt.head_lr_scale", 20.0, FRESH_HEAD),
        ("optimizer.betas", (0.9, 0.999), BERT), *_FINE_TUNE_SCHEDULE, ("schedule.warmup_ratio", 0.06, ROBERTA),
        ("group_by_length", True, PADDING), _STOP_EARLY)),
    Road("head only", (
        ("optimizer.lr", 1e-3, HEAD), ("optimizer.weight_decay", 0.01, BERT), ("optimizer.betas", (0.9, 0.999), BERT),
        *_FINE_TUNE_SCHEDULE, ("schedule.warmup_ratio", 0.06, ROBERTA), ("group_by_length", True, PADDING), _STOP_EARLY)),
    Road("LoRA", (
        ("optimizer.lr", 2e-4, LORA), ("optimizer.weight_decay", 0.0, QLORA), ("optimizer.betas", (0.9, 0.999), BERT),
        *_FINE_TUNE_SCHEDULE, ("schedule.warmup_ratio", 0.03, QLORA), ("group_by_length", True, PADDING), _STOP_EARLY)),
    Road("preference", (
        ("optimizer.lr", 1e-6, TRL_DPO), ("optimizer.weight_decay", 0.0, TRL_DPO), ("optimizer.betas", (0.9, 0.999), BERT),
        *_FINE_TUNE_SCHEDULE, ("schedule.warmup_ratio", 0.1, HANDBOOK), ("group_by_length", True, PADDING))),
    Road("preference, LoRA", (
        ("optimizer.lr", 5e-6, HANDBOOK), ("optimizer.weight_decay", 0.0, TRL_DPO), ("optimizer.betas", (0.9, 0.999), BERT),
        *_FINE_TUNE_SCHEDULE, ("schedule.warmup_ratio", 0.1, HANDBOOK), ("group_by_length", True, PADDING))),
    Road("QLoRA", (
        ("optimizer.lr", 2e-4, QLORA), ("optimizer.weight_decay", 0.0, QLORA), ("optimizer.betas", (0.9, 0.999), BERT),
        *_FINE_TUNE_SCHEDULE, ("schedule.warmup_ratio", 0.03, QLORA), ("group_by_length", True, PADDING), _STOP_EARLY)),
)}
BUDGET = "problem.constraints.time_budget: the step count fills the budget"
NO_BUDGET = "no time budget: a fixed step count"


def road_of(base: str, adapt: Adapt, objective: str = "likelihood") -> str:
    """The road a model section takes: scratch, preference tuning of a pretrained model (with or without LoRA),
    LoRA/QLoRA, head only (every layer frozen for good) or full fine-tune."""
    if base == "scratch":
        return "scratch"  # preference pairs on a scratch model: nothing pretrained to stay close to
    if objective in PREFERENCE_OBJECTIVES:
        return "preference, LoRA" if adapt.lora is not None else "preference"
    if adapt.lora is not None:
        return "QLoRA" if adapt.lora.quantize != "none" else "LoRA"
    if adapt.freeze is not None and adapt.freeze.bottom_layers == "all" and adapt.freeze.unfreeze_every is None:
        return "head only"
    return "full fine-tune"


def _is_set(model: BaseModel, path: str) -> bool:
    """Whether the spec itself wrote the dotted path under model (pydantic's model_fields_set)."""
    node: Any = model
    for part in path.split("."):
        if not isinstance(node, BaseModel) or part not in node.model_fields_set:
            return False
        node = getattr(node, part)
    return True


def _assign(model: BaseModel, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        model = getattr(model, part)
    # validated on assignment (the sections are Strict); a section value is copied, never shared between specs
    setattr(model, last, value.model_copy(deep=True) if isinstance(value, BaseModel) else value)


def apply_road(train: Train, adapt: Adapt, road: str, budget: bool) -> dict[str, str]:
    """Set the road's values the spec left out (under train, or model.adapt for `adapt.` paths); returns
    {dotted path: why} for each value set.

    budget: whether problem.constraints.time_budget or train.max_time bounds the run; then max_steps is
    auto (planned to fill it) unless the spec gives a number.
    """
    chosen: dict[str, str] = {}
    warmup_given = _is_set(train, "schedule.warmup_steps") or _is_set(train, "schedule.warmup_ratio")
    for path, value, source in ROADS[road].values:
        if path.startswith("schedule.warmup_") and warmup_given:
            continue  # the spec chose its warmup, in steps or as a share: the road's other form stays out
        section, path, prefix = (adapt, path[6:], "model.adapt.") if path.startswith("adapt.") else (train, path, "train.")
        if not _is_set(section, path):
            _assign(section, path, value)
            chosen[prefix + path] = f"road: {road} ({source})"
    if not _is_set(train, "max_steps"):
        if budget:
            _assign(train, "max_steps", "auto")
        chosen["train.max_steps"] = f"default: {BUDGET if budget else NO_BUDGET}"
    if not _is_set(train, "eval_every"):
        chosen["train.eval_every"] = "default: every 100 steps, or often enough for 5 validation passes in a shorter run"
    return chosen
