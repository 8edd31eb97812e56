"""A decoder-only transformer language model, readable top to bottom.

With the defaults it is GPT-2 (learned positions, LayerNorm, tanh-GELU MLP, tied embeddings), and
its logits equal Hugging Face's GPT2LMHeadModel given the same weights. The config switches on the
newer parts: rotary positions, RMSNorm, SwiGLU, grouped-query and sliding-window attention.
Blocks receive their submodules, so swapping a piece (a LoRA linear, another MLP) is a
constructor argument, not a subclass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from tailor.labels import IGNORE
from tailor.sampling import sample_next


@dataclass
class TransformerConfig:
    vocab_size: int = 50257
    block_size: int = 1024        # longest sequence the positions cover
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None  # < n_head: grouped-query attention; None: = n_head
    n_embd: int = 768
    mlp_hidden: int | None = None  # None: 4 * n_embd (GELU) or 8/3 * n_embd rounded (SwiGLU)
    dropout: float = 0.0
    bias: bool = True
    norm: str = "layernorm"       # layernorm | rmsnorm
    norm_eps: float = 1e-5
    activation: str = "gelu_tanh"  # gelu_tanh | gelu | swiglu
    positions: str = "learned"    # learned | rope
    rope_theta: float = 10000.0
    window: int | None = None     # sliding-window attention span; None: full causal
    tie_weights: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes saved with the config

    def __post_init__(self) -> None:
        kv = self.n_kv_head or self.n_head
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.n_head % kv:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({kv})")
        for name, value, allowed in (("norm", self.norm, ("layernorm", "rmsnorm")),
                                     ("activation", self.activation, ("gelu_tanh", "gelu", "swiglu")),
                                     ("positions", self.positions, ("learned", "rope"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)


def make_norm(cfg: TransformerConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


def rope_tables(cfg: TransformerConfig, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables for rotary positions, each (block_size, head_dim)."""
    half = cfg.head_dim // 2
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, half, device=device).float() / half))
    angles = torch.outer(torch.arange(cfg.block_size, device=device).float(), inv_freq)  # (T, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hs)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, nh, T, hs) by the positions' angles (the rotate-half convention of Llama)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head, self.n_kv_head = cfg.n_head, cfg.n_kv_head or cfg.n_head
        self.head_dim, self.window, self.dropout = cfg.head_dim, cfg.window, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, (self.n_head + 2 * self.n_kv_head) * self.head_dim, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                cache: dict | None = None, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(
            [self.n_head * self.head_dim, self.n_kv_head * self.head_dim, self.n_kv_head * self.head_dim], dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        past = 0
        if cache is not None:  # generation: append this step's keys and values
            if "k" in cache:
                past = cache["k"].shape[2]
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        mask = self._mask(T, past, x.device, attention_mask)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_head != self.n_head)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _mask(self, T: int, past: int, device: torch.device,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor | None:
        """Boolean (T, past+T) mask where it is needed: cached prefixes, sliding windows, padding.

        attention_mask (B, past+T) marks real tokens (False: padding); the mask is then (B, 1, T, past+T).
        A padded batch keeps each row's real tokens contiguous, so column distance is position distance.
        """
        if attention_mask is None and self.window is None and (past == 0 or T == 1):
            return None  # plain causal (is_causal) or one new token that may see everything
        q_pos = torch.arange(past, past + T, device=device)[:, None]
        k_pos = torch.arange(past + T, device=device)[None, :]
        mask = k_pos <= q_pos
        if self.window is not None:
            mask &= q_pos - k_pos < self.window
        if attention_mask is not None:
            # packed rows come as a whole (B, 1, T, T) mask; padding as (B, past+T)
            allowed = attention_mask if attention_mask.dim() == 4 else attention_mask[:, None, None, :]
            # a padding query sees itself, so that no softmax row is empty (NaN would leak through the cache)
            mask = (mask & allowed) | (k_pos == q_pos)
        return mask


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.swiglu = cfg.activation == "swiglu"
        hidden = cfg.mlp_hidden or (int(8 * cfg.n_embd / 3 + 63) // 64 * 64 if self.swiglu else 4 * cfg.n_embd)
        self.c_fc = nn.Linear(cfg.n_embd, hidden * (2 if self.swiglu else 1), bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.n_embd, bias=cfg.bias)
        self.approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, hidden or 2*hidden)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate=self.approximate)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """Pre-norm residual block; it is handed its attention, MLP and norms."""

    def __init__(self, attn: nn.Module, mlp: nn.Module, ln_1: nn.Module, ln_2: nn.Module):
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = ln_1, attn, ln_2, mlp

    def forward(self, x: torch.Tensor, rope, cache: dict | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache, attention_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.positions == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(
            Block(CausalSelfAttention(cfg), MLP(cfg), make_norm(cfg), make_norm(cfg)) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        if cfg.positions == "rope":
            cos, sin = rope_tables(cfg)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @classmethod
    def from_gpt2(cls, hf_model: nn.Module) -> Transformer:
        """Copy a Hugging Face GPT2LMHeadModel into the equivalent Transformer (as nanoGPT does)."""
        c = hf_model.config
        model = cls(TransformerConfig(vocab_size=c.vocab_size, block_size=c.n_positions, n_layer=c.n_layer,
                                      n_head=c.n_head, n_embd=c.n_embd, norm_eps=c.layer_norm_epsilon))
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        state = {}
        for key, value in hf_model.state_dict().items():
            key = key.removeprefix("transformer.")
            if key.endswith(".attn.bias") or key.endswith(".attn.masked_bias"):
                continue  # HF's stored causal masks
            state[key] = value.t() if key.endswith(conv1d) else value  # Conv1D stores (in, out)
        model.load_state_dict(state, strict=True)
        return model

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n

    @property
    def hidden_size(self) -> int:
        return self.config.n_embd

    def new_caches(self) -> list[dict]:
        """Empty key/value caches, one per block, that forward(caches=...) fills as it decodes."""
        return [{} for _ in self.h]

    def features(self, idx: torch.Tensor, caches: list[dict] | None = None, positions: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final normalised hidden states (B, T, C): what the LM head and the task heads read.

        For padded batches (serving), positions (B, T) gives each token's position in its own sequence
        and attention_mask (B, cached+T) marks the real tokens of the cache and of idx.
        position_ids (B, T) mark packed rows (several examples in one row, as Hugging Face's
        DataCollatorWithFlattening does): positions restart at 0 for each example, and attention
        stays within the example.
        """
        B, T = idx.shape
        past = caches[0]["k"].shape[2] if caches and "k" in caches[0] else 0
        if position_ids is not None:
            doc = (position_ids == 0).cumsum(dim=-1)  # (B, T): which example of the row each token belongs to
            positions, attention_mask = position_ids, (doc[:, :, None] == doc[:, None, :])[:, None]  # (B, 1, T, T)
        if positions is None:
            if past + T > self.config.block_size:
                raise ValueError(f"sequence of {past + T} tokens exceeds block_size {self.config.block_size}")
            positions = torch.arange(past, past + T, device=idx.device)  # (T,)
        elif not torch.compiler.is_exporting() and int(positions.max()) >= self.config.block_size:
            raise ValueError(f"position {int(positions.max())} exceeds block_size {self.config.block_size}")
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(positions)  # (T, C) broadcast or (B, T, C)
        else:
            rope = (self.rope_cos[positions], self.rope_sin[positions])  # (T, hs) or (B, T, hs) each
            if positions.dim() == 2:
                rope = (rope[0][:, None], rope[1][:, None])  # (B, 1, T, hs): broadcast over heads
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, rope, caches[i] if caches is not None else None, attention_mask)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                caches: list[dict] | None = None, positions: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                scored_at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, given targets (-100 = ignore), the mean cross-entropy.

        scored_at (flat indices of the scored targets) limits the output layer to those positions:
        the logits are then (N, vocab).
        """
        h = self.features(idx, caches, positions, attention_mask, position_ids)  # (B, T, C)
        if scored_at is not None:
            h = h.flatten(0, 1).index_select(0, scored_at)
            targets = targets.reshape(-1).index_select(0, scored_at) if targets is not None else None
        logits = self.lm_head(h)  # (B, T, vocab) or (N, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, stop_ids: set[int] | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue idx (1, T) with a key/value cache; temperature 0 is greedy."""
        caches: list[dict] = [{} for _ in self.h]
        out, step = idx, idx
        for _ in range(max_new_tokens):
            if out.shape[1] >= self.config.block_size:
                break
            logits, _ = self(step, caches=caches)
            next_id = sample_next(logits[:, -1, :], temperature, top_p, generator)  # (1, 1)
            out = torch.cat([out, next_id], dim=1)
            if stop_ids and next_id.item() in stop_ids:
                break
            step = next_id
        return out
