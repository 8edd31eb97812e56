"""`train:` and `tune:` — how the weights are fitted and searched for."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tailor.spec.base import Duration, Strict
from tailor.spec.metrics import SPLITS, TABLE, higher_is_better, loop_keys, metric, preference_metrics


MIN_VALIDATIONS = 5  # a run shorter than 5 * 100 steps validates often enough for this many points of its curve


def auto_eval_every(steps: int) -> int:
    """eval_every: auto — every 100 steps, or steps / MIN_VALIDATIONS in a shorter run."""
    return max(1, min(100, steps // MIN_VALIDATIONS))


# The defaults below are the scratch road's; where the spec leaves them out, tailor.spec.roads chooses them for
# the road taken (full fine-tune, head only, LoRA) and `tailor spec show` says which and why.
class Optimizer(Strict):
    name: Literal["adamw", "sgd", "adafactor"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="peak learning rate; default: the road's")
    weight_decay: float = Field(0.1, ge=0, description="not applied to norms, biases and other vectors; default: the road's")
    betas: tuple[float, float] = Field((0.9, 0.95), description="adamw; default: the road's")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd")
    nesterov: bool = Field(False, description="sgd: Nesterov momentum")


class Schedule(Strict):
    name: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int | None = Field(100, ge=0, description="steps of linear warmup; null: warmup_ratio of the run")
    warmup_ratio: float | None = Field(None, ge=0, lt=1, description="warmup as a share of the run's steps "
                                       "(with warmup_steps: null), as HF Trainer's warmup_ratio")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final lr as a share of the peak")

    @model_validator(mode="after")
    def _one_warmup(self) -> Schedule:
        if self.warmup_ratio is not None and "warmup_steps" not in self.model_fields_set:
            self.__dict__["warmup_steps"] = None  # a ratio given alone replaces the default steps (no re-validation)
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("warmup_steps and warmup_ratio both set: give one (warmup_steps: null to use the ratio)")
        return self

    def warmup_for(self, total: int) -> int:
        """Warmup steps for a run of `total` steps: warmup_steps, or warmup_ratio of total."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round((self.warmup_ratio or 0.0) * total)


class Loss(Strict):
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    class_weights: dict[str, float] | None = Field(
        None, description="classification: label -> weight in the cross-entropy (unlisted labels weigh 1)")


class Preference(Strict):
    """train.objective dpo or orpo: how strongly the preference term pulls (TRL's defaults)."""

    beta: float = Field(0.1, gt=0, description="dpo: the KL weight beta (TRL DPOConfig: 0.1); orpo: the odds-ratio "
                                               "weight lambda (TRL ORPOConfig.beta: 0.1)")


PREFERENCE_OBJECTIVES = ("dpo", "orpo")


class EarlyStopping(Strict):
    metric: str = Field("validation/loss", description="measured at every validation pass: " + ", ".join(loop_keys()))
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto: the metric's own direction")
    patience: int = Field(3, ge=1, description="validation passes without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest change that counts as an improvement")

    @field_validator("metric")
    @classmethod
    def _in_loop(cls, value: str) -> str:
        if value not in loop_keys():
            raise ValueError(f"{value!r} is not measured during training; expected one of {', '.join(loop_keys())}")
        return value

    @property
    def maximize(self) -> bool:
        """Whether a larger value is an improvement: the mode, or the metric table's direction (auto)."""
        return self.mode == "max" or (self.mode == "auto" and higher_is_better(self.metric))


class Checkpoints(Strict):
    every: int | None = Field(None, ge=1, description="steps between checkpoints; default train.eval_every")
    keep_last: int = Field(2, ge=1, description="how many of the latest checkpoints to keep")
    keep_best: bool = Field(True, description="also keep the checkpoint with the best validation metric")


class Tracking(Strict):
    tensorboard: bool = Field(True, description="write TensorBoard event files under train/tensorboard/")
    mlflow_uri: str | None = Field(None, description="an MLflow tracking URI: log params and metrics there too")
    experiment: str | None = Field(None, description="MLflow experiment name; default the spec name")


class Distributed(Strict):
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="how several processes share the model")
    backend: Literal["auto", "nccl", "gloo"] = Field("auto", description="auto: nccl on CUDA, gloo on CPU")


class Train(Strict):
    optimizer: Optimizer = Field(default_factory=Optimizer)
    schedule: Schedule = Field(default_factory=Schedule)
    loss: Loss = Field(default_factory=Loss)
    objective: Literal["likelihood", "dpo", "orpo"] = Field(
        "likelihood", description="likelihood: the head's own loss (next-token or label cross-entropy, squared "
                                  "error); dpo, orpo: preference pairs (data.fields.rejected)")
    preference: Preference = Field(default_factory=Preference)
    batch_size: int | Literal["auto"] = Field(32, description="examples per optimizer step (all processes); auto: planned")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step (batch_size is split among them)")
    max_steps: int | Literal["auto"] = Field(
        1000, description="optimizer steps; auto: as many as fit problem.constraints.time_budget "
        "(the default when there is a budget)")
    max_time: Duration | None = Field(None, description="stop earlier when this wall time is spent; default problem.constraints.time_budget")
    eval_every: int | Literal["auto"] = Field(
        "auto", description="steps between validation passes; auto: every 100 steps, or often enough for "
        f"{MIN_VALIDATIONS} passes in a shorter run")
    eval_batches: int = Field(20, ge=1, description="batches per validation pass")
    grad_clip: float | None = Field(1.0, gt=0)
    loss_on: Literal["output", "all", "last"] = Field(
        "output", description="which tokens are learnt. Pairs: the answers (output, last) or everything (all). "
                              "Conversations: every assistant turn (output), user and assistant turns (all, "
                              "LLaMA-Factory's train_on_prompt), or only the last assistant turn (last, its "
                              "mask_history); each learnt turn with its end-of-turn token; system turns and "
                              "role headers never")
    packing: bool = Field(False, description="input/output data: pack examples into full rows, no padding")
    group_by_length: bool = Field(
        False, description="batch examples of similar length (seeded megabatches, as HF's group_by_length) so that "
        "little compute goes to padding; default: the road's")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 where the device has it, else fp32")
    compile: bool = Field(False, description="torch.compile the model")
    deterministic: bool = Field(True, description="deterministic kernels, so a resumed run repeats the same curve")
    early_stopping: EarlyStopping | None = None
    checkpoints: Checkpoints = Field(default_factory=Checkpoints)
    tracking: Tracking = Field(default_factory=Tracking)
    distributed: Distributed = Field(default_factory=Distributed)
    seed: int = 0

    @model_validator(mode="after")
    def _sizes(self) -> Train:
        for key in ("batch_size", "max_steps", "eval_every"):
            value = getattr(self, key)
            if value != "auto" and value < 1:
                raise ValueError(f"{key} must be at least 1 or 'auto', got {value}")
        if self.early_stopping is not None:
            name = self.early_stopping.metric.split("/", 1)[1]
            preference = self.objective in PREFERENCE_OBJECTIVES
            if name != "loss" and (name in preference_metrics()) != preference:
                allowed = (("loss",) + preference_metrics()) if preference else \
                    tuple(k.split("/", 1)[1] for k in loop_keys() if k.split("/", 1)[1] not in preference_metrics())
                raise ValueError(f"early_stopping.metric: {name!r} is not measured with objective "
                                 f"{self.objective!r}; expected validation/ + one of {', '.join(allowed)}")
        if self.objective in PREFERENCE_OBJECTIVES and self.packing:
            raise ValueError(f"packing: the {self.objective} objective scores each answer as a whole sequence; "
                             "set packing: false")
        if self.batch_size != "auto" and self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of grad_accum ({self.grad_accum})")
        return self

    def eval_interval(self, steps: int) -> int:
        """Steps between validation passes in a run of `steps`: eval_every, or auto's choice."""
        return self.eval_every if self.eval_every != "auto" else auto_eval_every(steps)

    @property
    def eval_batch_size(self) -> int:
        """Batch size for scoring whole splits: batch_size, or 32 when it is planned."""
        return self.batch_size if self.batch_size != "auto" else 32


class Tune(Strict):
    method: Literal["grid", "random", "bayesian"] = "bayesian"
    trials: int = Field(10, ge=1)
    metric: str = Field("validation/loss", description="a flat metric key, e.g. validation/loss or validation/f1_macro; "
                                                       "keys other than " + ", ".join(loop_keys()) + " are read from "
                                                       "each trial's evaluation")
    direction: Literal["auto", "minimize", "maximize"] = Field("auto", description="auto: the metric's own direction")

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        split, _, name = value.rpartition("/")
        if split not in SPLITS or name not in TABLE:
            raise ValueError(f"{value!r}: expected split/metric, e.g. validation/loss, with a split of "
                             f"{', '.join(SPLITS)} and a metric of tailor.spec.metrics")
        return value

    @property
    def goal(self) -> str:
        """maximize or minimize: the direction given, or the metric table's (auto)."""
        return self.direction if self.direction != "auto" else metric(self.metric).direction
    space: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="spec key -> [low, high] or [low, high, log] for numbers, or a list of choices")
    pruner: Literal["median", "hyperband", "none"] = "median"
    parallel: int = Field(1, ge=1, description="trials run at once in this process")
    storage: str | None = Field(None, description="optuna storage URL; default SQLite in the runs folder. "
                                                  "postgresql://... shares trials across machines")
    study: str | None = Field(None, description="study name; default the spec name")
    seed: int = 0
