"""`tokenizer:` and `model:` — the vocabulary and the network."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tailor.spec.base import Strict


class TokenizerSpec(Strict):
    type: Literal["bpe", "pretrained"] = Field(
        "bpe", description="bpe: byte-level BPE trained on the train split; pretrained: a model's own")
    vocab_size: int = Field(4096, ge=300, le=1_000_000)
    min_frequency: int = Field(2, ge=1)
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
        "auto", description="context length; auto: the longest input/output example (at most 1024), or 256 for a corpus")
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


class ModelSpec(Strict):
    base: str = Field("scratch", description="scratch, a preset (smollm2-135m, minilm-l6), a folder, a .gguf, a hub id")
    head: Literal["causal_lm"] = "causal_lm"
    arch: TransformerArch = Field(default_factory=TransformerArch)
    seed: int = Field(0, description="seed for the initial weights")
