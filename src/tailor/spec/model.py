"""`tokenizer:` and `model:` — the vocabulary and the network."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from tailor.spec.base import Strict

TOKENIZER_TYPES = ("bpe", "char_bpe", "wordpiece", "unigram", "sentencepiece", "pretrained")


class TokenizerSpec(Strict):
    type: Literal["bpe", "char_bpe", "wordpiece", "unigram", "sentencepiece", "pretrained"] = Field(
        "bpe", description="bpe: byte-level BPE (GPT-2's); char_bpe: BPE over characters with SentencePiece-style "
        "word boundaries; wordpiece: BERT's; unigram; sentencepiece: trained by the sentencepiece library (unigram); "
        "pretrained: the model's own")
    vocab_size: int = Field(4096, ge=8, le=1_000_000, description="including special and byte-fallback tokens")
    min_frequency: int = Field(2, ge=1, description="bpe, char_bpe, wordpiece: least count of a merged pair")
    normalization: Literal["none", "nfc", "nfkc"] = Field(
        "none", description="Unicode normal form applied before tokenizing (none keeps text byte-exact)")
    lowercase: bool = False
    byte_fallback: bool = Field(
        True, description="char_bpe, unigram, sentencepiece: unseen characters become byte tokens instead of <unk>")
    special_tokens: list[str] = Field(default_factory=list, description="extra tokens never split, e.g. '<|user|>'")
    source: str | None = Field(None, description="pretrained: preset, folder or .gguf; default model.base")


class TransformerArch(Strict):
    """A decoder-only transformer built from scratch (see tailor.models.transformer)."""

    family: Literal["transformer"] = "transformer"
    size: Literal["auto"] | None = Field(
        None, description="auto: choose n_layer, n_head and n_embd compute-optimally for problem.constraints.time_budget")
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    n_kv_head: int | None = Field(None, ge=1, description="fewer than n_head: grouped-query attention")
    n_embd: int = Field(128, ge=8)
    block_size: int | Literal["auto"] = Field(
        "auto", description="context length; auto: the longest input/output example (at most 1024), or 256 for a "
        "corpus; also the training context of a pretrained model")
    dropout: float = Field(0.0, ge=0, lt=1)
    bias: bool = True
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    activation: Literal["gelu_tanh", "gelu", "swiglu"] = "gelu_tanh"
    positions: Literal["learned", "rope"] = "learned"
    window: int | None = Field(None, ge=1, description="sliding-window attention span")
    tie_weights: bool = True

    @model_validator(mode="after")
    def _heads(self) -> TransformerArch:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_kv_head is not None and self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        return self


class RecurrentArch(Strict):
    """An RNN, LSTM or GRU built from scratch (see tailor.models.recurrent)."""

    family: Literal["rnn", "lstm", "gru"]
    n_layer: int = Field(2, ge=1)
    n_embd: int = Field(128, ge=8, description="embedding size")
    n_hidden: int = Field(256, ge=8, description="recurrent state size")
    block_size: int | Literal["auto"] = Field("auto", description="training window length (as for transformers)")
    dropout: float = Field(0.0, ge=0, lt=1)
    bidirectional: bool = Field(False, description="encoders only (classification heads): read both directions")
    tie_weights: bool = True


def _arch_tag(value: Any) -> str:
    family = value.get("family", "transformer") if isinstance(value, dict) else getattr(value, "family", "transformer")
    return "recurrent" if family in ("rnn", "lstm", "gru") else "transformer"


Arch = Annotated[Annotated[TransformerArch, Tag("transformer")] | Annotated[RecurrentArch, Tag("recurrent")],
                 Discriminator(_arch_tag)]
ARCH_TAGS = ("transformer", "recurrent")  # union tags pydantic puts in error locations


class Freeze(Strict):
    """Which weights stay fixed; with unfreeze_every the frozen layers thaw one at a time, top down (ULMFiT)."""

    embeddings: bool = Field(False, description="keep the input embeddings fixed for the whole run")
    bottom_layers: int | Literal["all"] = Field(0, description="freeze the N lowest layers (all: every layer)")
    unfreeze_every: int | None = Field(None, ge=1, description="thaw one more frozen layer every K units")
    unit: Literal["epochs", "steps"] = "epochs"


class Lora(Strict):
    """Low-rank adapters (peft); the base weights stay fixed and the adapters are merged for export."""

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["auto"] = Field(
        "auto", description="names of the linear layers to adapt; auto: the attention projections")
    quantize: Literal["none", "nf4"] = Field(
        "none", description="nf4: QLoRA, the frozen base held in 4-bit NormalFloat (bitsandbytes) with bf16 "
        "compute; needs a CUDA GPU and `pip install bitsandbytes`")


class Adapt(Strict):
    freeze: Freeze | None = None
    lr_decay: float = Field(1.0, gt=0, le=1, description="discriminative learning rates: each layer down gets "
                            "this factor more (1: one rate everywhere)")
    lora: Lora | None = None
    head_lr_scale: float = Field(1.0, gt=0, description="a fresh task head (classifier, score) learns at this many "
                                 "times train.optimizer.lr; default: the road's")

    @model_validator(mode="after")
    def _compatible(self) -> Adapt:
        if self.lora is not None and self.freeze is not None:
            raise ValueError("freeze and lora together: LoRA already keeps every base weight fixed; use one")
        return self


HEADS = ("causal_lm", "classification", "token_classification", "regression")
HEAD_FOR_OUTPUT = {"text": "causal_lm", "label": "classification", "token-labels": "token_classification",
                   "score": "regression"}


def head_for(output: str, head: str) -> str:
    """The model head: model.head, or the one problem.output implies when it is auto."""
    return HEAD_FOR_OUTPUT[output] if head == "auto" else head


class ModelSpec(Strict):
    base: str = Field("scratch", description="scratch, a preset (smollm2-135m, minilm-l6), a folder, a .gguf, a hub id")
    head: Literal["auto", "causal_lm", "classification", "token_classification", "regression"] = Field(
        "auto", description="auto: from problem.output (text, label, token-labels, score)")
    arch: Arch = Field(default_factory=TransformerArch)
    pooling: Literal["mean", "last"] = Field("mean", description="scratch classification/regression heads: "
                                             "average the tokens' states or take the last one")
    adapt: Adapt = Field(default_factory=Adapt)
    seed: int = Field(0, description="seed for the initial weights (and fresh heads)")
