"""The losses the heads train with: token/label cross-entropy and regression MSE."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tailor.errors import TailorError
from tailor.labels import IGNORE



@dataclass(frozen=True)
class Objective:
    """How a head's outputs are scored; compute_loss picks the method that fits the head."""

    label_smoothing: float = 0.0
    class_weight: torch.Tensor | None = None  # (classes,) or None

    @property
    def plain(self) -> bool:
        """Unweighted cross-entropy without smoothing: what a language model's own forward computes."""
        return self.label_smoothing == 0.0 and self.class_weight is None

    def cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor,
                      scored: int | None = None) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy over positions whose target is not IGNORE, and their count (`scored` if given).

        Works for next-token targets (B, T) with logits (B, T, V) and for labels (B,) with logits (B, K).
        With class weights the mean is weighted, as torch defines it.
        """
        flat = logits.reshape(-1, logits.size(-1))
        if flat.dtype in (torch.float16, torch.bfloat16):
            flat = flat.float()  # the softmax of low-precision logits loses the small probabilities
        weight = None if self.class_weight is None else self.class_weight.to(flat.device, flat.dtype)
        loss = F.cross_entropy(flat, targets.reshape(-1), weight=weight, ignore_index=IGNORE,
                               label_smoothing=self.label_smoothing)
        return loss, scored if scored is not None else int((targets != IGNORE).sum())

    @staticmethod
    def mse(predictions: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Mean squared error for regression heads, and the number of scored values."""
        predictions = predictions.reshape(targets.shape).float()
        return F.mse_loss(predictions, targets.float()), targets.numel()


def class_weight_tensor(weights: dict[str, float] | None, labels: list[str] | None) -> torch.Tensor | None:
    """A (classes,) weight vector from train.loss.class_weights and the head's label names."""
    if not weights:
        return None
    if not labels:
        raise TailorError("train.loss.class_weights: this model has no class labels "
                          "(class weights need a classification or token-classification head)")
    unknown = sorted(set(weights) - set(labels))
    if unknown:
        raise TailorError(f"train.loss.class_weights: unknown label(s) {', '.join(map(repr, unknown))}; "
                          f"the labels are {', '.join(map(repr, labels))}")
    return torch.tensor([float(weights.get(label, 1.0)) for label in labels])
