"""Recurrent language models and encoders: RNN, LSTM and GRU, readable top to bottom.

Embedding -> stacked recurrent layers -> (projection) -> LM head tied to the embedding. As a
language model it reads left to right and carries its state between generation steps; as an
encoder for task heads it may read both directions (`bidirectional`), with padding packed away
so the backward direction starts at each sequence's real last token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from tailor.errors import TailorError
from tailor.sampling import sample_next

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass
class RecurrentConfig:
    cell: str = "lstm"          # rnn | lstm | gru
    vocab_size: int = 256
    n_embd: int = 128
    n_hidden: int = 256
    n_layer: int = 2
    dropout: float = 0.0        # between layers and before the head
    bidirectional: bool = False  # encoders only
    tie_weights: bool = True
    block_size: int = 256       # training window; the model itself reads any length

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class Recurrent(nn.Module):
    def __init__(self, cfg: RecurrentConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.rnn = CELLS[cfg.cell](cfg.n_embd, cfg.n_hidden, num_layers=cfg.n_layer, batch_first=True,
                                   dropout=cfg.dropout if cfg.n_layer > 1 else 0.0, bidirectional=cfg.bidirectional)
        width = self.hidden_size
        # a tied head reads vectors of the embedding's size: project the state down when sizes differ
        self.proj = nn.Linear(width, cfg.n_embd, bias=False) if cfg.tie_weights and width != cfg.n_embd else None
        self.lm_head = nn.Linear(cfg.n_embd if cfg.tie_weights else width, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)

    @property
    def hidden_size(self) -> int:
        return self.config.n_hidden * (2 if self.config.bidirectional else 1)

    def features(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 state=None) -> tuple[torch.Tensor, object]:
        """Hidden states (B, T, H or 2H) and the final recurrent state."""
        x = self.drop(self.wte(idx))  # (B, T, C)
        if attention_mask is not None and self.config.bidirectional:
            lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, state = self.rnn(packed, state)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=idx.shape[1])  # (B, T, 2H)
        else:
            out, state = self.rnn(x, state)  # (B, T, H)
        return self.drop(out), state

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, state=None,
                position_ids: torch.Tensor | None = None,
                scored_at: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, vocab) and, given targets (-100 = ignore), the mean cross-entropy.

        scored_at (flat indices of the scored targets) limits the output layer to those positions:
        the logits are then (N, vocab).
        """
        if position_ids is not None:
            raise TailorError("train.packing: a recurrent model carries its state along a whole row, so examples "
                              "packed into one row would leak into each other; set train.packing: false")
        if scored_at is None:
            logits, _ = self.step(idx, state)
        else:
            logits = self.lm_head(self.hidden(idx, state)[0].flatten(0, 1).index_select(0, scored_at))
            targets = targets.reshape(-1).index_select(0, scored_at) if targets is not None else None
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def step(self, idx: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """Logits (B, T, vocab) for idx continuing from `state`, and the state after it."""
        h, state = self.hidden(idx, state)
        return self.lm_head(h), state

    def hidden(self, idx: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        """What the output layer reads (B, T, C) for idx continuing from `state`, and the state after it."""
        if self.config.bidirectional:
            raise ValueError("a bidirectional recurrent encoder cannot predict the next token")
        h, state = self.features(idx, state=state)
        return (self.proj(h) if self.proj is not None else h), state

    def prefill(self, idx: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Right-padded prompts (B, T) of the given lengths read at once (packed, so padding never
        enters a state): each row's next-token logits (B, vocab) and its state after its last real token."""
        if self.config.bidirectional:
            raise ValueError("a bidirectional recurrent encoder cannot predict the next token")
        packed = pack_padded_sequence(self.drop(self.wte(idx)), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)  # (B, max(lengths), H)
        h = self.drop(out[torch.arange(idx.shape[0], device=idx.device), lengths.to(idx.device) - 1])  # (B, H)
        if self.proj is not None:
            h = self.proj(h)
        return self.lm_head(h), state

    def num_params(self, non_embedding: bool = True) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, stop_ids: set[int] | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue idx (1, T), carrying the recurrent state; temperature 0 is greedy."""
        logits, state = self.step(idx)
        out = idx
        for _ in range(max_new_tokens):
            next_id = sample_next(logits[:, -1, :], temperature, top_p, generator)  # (1, 1)
            out = torch.cat([out, next_id], dim=1)
            if stop_ids and next_id.item() in stop_ids:
                break
            logits, state = self.step(next_id, state)
        return out
