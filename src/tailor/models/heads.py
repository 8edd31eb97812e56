"""Task heads for the from-scratch families: a backbone's hidden states -> labels, scores or tags.

A head is handed its backbone (any module with `features` and `hidden_size`), so the same head
serves the transformer and the recurrent models.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tailor.models.family import StatefulDecoder


def backbone_states(backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, H) hidden states; recurrent encoders use the mask to skip padding."""
    if isinstance(backbone, StatefulDecoder):  # features -> (states, final state)
        return backbone.features(input_ids, attention_mask)[0]
    return backbone.features(input_ids)


class SequenceHead(nn.Module):
    """One vector per sequence (mean of its tokens' states, or its last token's) -> n_out logits or a score."""

    def __init__(self, backbone: nn.Module, n_out: int, pooling: str = "mean", dropout: float = 0.0):
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        self.drop = nn.Dropout(dropout)
        self.score = nn.Linear(backbone.hidden_size, n_out)
        nn.init.normal_(self.score.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.score.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = backbone_states(self.backbone, input_ids, attention_mask)  # (B, T, H)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if self.pooling == "last":  # right padding: the last real token sits at length - 1
            last = (mask.sum(dim=1) - 1).clamp(min=0)
            pooled = h[torch.arange(h.shape[0], device=h.device), last]  # (B, H)
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)  # (B, H)
        return self.score(self.drop(pooled))  # (B, n_out)


class TokenHead(nn.Module):
    """One label per token: hidden state -> n_out logits."""

    def __init__(self, backbone: nn.Module, n_out: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.drop = nn.Dropout(dropout)
        self.score = nn.Linear(backbone.hidden_size, n_out)
        nn.init.normal_(self.score.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.score.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.score(self.drop(backbone_states(self.backbone, input_ids, attention_mask)))  # (B, T, n_out)
