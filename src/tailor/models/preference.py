"""Preference objectives over prompt / preferred / rejected triples: DPO and ORPO, as TRL computes them.

A preference batch holds pairs: `input_ids` and `targets` are (B, 2, T), row 0 of a pair the prompt with
its preferred answer, row 1 with its rejected one; the targets score the answer tokens only (IGNORE
elsewhere). ORPO's likelihood term scores the preferred rows' `targets`, or `nll_targets` (B, T) where
the batch has them (train.loss_on all: the prompt too, as TRL's ORPOTrainer does).

DPO (Rafailov et al. 2023; TRL `DPOTrainer`, loss_type sigmoid): with summed answer log-probabilities
of the policy (pc, pr) and of the reference model (rc, rr),
    loss = -log sigmoid(beta * ((pc - rc) - (pr - rr))),  rewards = beta * (p - r).
ORPO (Hong et al. 2024; TRL `ORPOTrainer`): with mean answer log-probabilities (ac, ar),
    loss = NLL(preferred) - beta * log sigmoid(log odds(ac) - log odds(ar)),  rewards = beta * a,
where log odds(a) = a - log(1 - exp(a)). Both use no reference model for ORPO and, for DPO with LoRA, the
policy with its adapters switched off (no second copy in memory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tailor.labels import IGNORE
from tailor.models import lm_logits

# (input_ids (N, T), targets (N, T)) -> summed answer log-probabilities (N,) under the reference model
Reference = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
STATS = ("reward_chosen", "reward_rejected", "reward_accuracy", "reward_margin")


@dataclass
class Preference:
    """A preference objective as the loop runs it: its kind, beta, and (DPO) the reference model's log-probs."""

    kind: str                        # dpo | orpo
    beta: float = 0.1
    reference: Reference | None = None
    reference_kind: str = "none"     # said in the train summary: lora-disabled, frozen copy, none


def scored_logps(model: nn.Module, input_ids: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(per-token log-probabilities (M,), their rows (M,), their flat positions (M,)) where targets score.

    The output layer runs only at the scored positions (tailor.models.lm_logits), in float32 for the softmax.
    """
    flat = targets.reshape(-1)
    at = (flat != IGNORE).nonzero().squeeze(1)
    logits = lm_logits(model, input_ids, at).float()                     # (M, vocab)
    logp = logits.log_softmax(-1).gather(1, flat.index_select(0, at)[:, None]).squeeze(1)
    return logp, torch.div(at, targets.shape[-1], rounding_mode="floor"), at


def answer_logps(model: nn.Module, input_ids: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-probability of each row's scored tokens (N,), how many tokens each row scores (N,))."""
    logp, rows, _ = scored_logps(model, input_ids, targets)
    n = input_ids.shape[0]
    sums = torch.zeros(n, device=logp.device, dtype=logp.dtype).index_add(0, rows, logp)
    counts = torch.zeros(n, device=logp.device, dtype=logp.dtype).index_add(0, rows, torch.ones_like(logp))
    return sums, counts


def dpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-pair DPO losses, chosen rewards, rejected rewards) from summed answer log-probabilities (B,)."""
    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    losses = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio))
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012)."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def odds_ratio_loss(chosen_mean: torch.Tensor, rejected_mean: torch.Tensor,
                    beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(per-pair beta * log sigmoid(log odds ratio), chosen rewards, rejected rewards) from mean log-probs (B,).

    The loss subtracts the mean of the first term from the likelihood term, as TRL's ORPOTrainer does.
    """
    log_odds = (chosen_mean - rejected_mean) - (log1mexp(chosen_mean) - log1mexp(rejected_mean))
    return beta * F.logsigmoid(log_odds), beta * chosen_mean.detach(), beta * rejected_mean.detach()


def preference_loss(model: nn.Module, batch: dict[str, torch.Tensor],
                    objective: Preference) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
    """(mean loss over the batch's pairs, pairs, sums over the pairs of each of STATS) on the model's device."""
    ids, targets = batch["input_ids"], batch["targets"]                   # (B, 2, T)
    B, _, T = ids.shape
    ids, targets = ids.reshape(2 * B, T), targets.reshape(2 * B, T)     # rows 2i: preferred, 2i + 1: rejected
    if objective.kind == "dpo":
        sums, _ = answer_logps(model, ids, targets)
        with torch.no_grad():
            ref = objective.reference(ids, targets)
        losses, chosen_r, rejected_r = dpo_loss(sums[0::2], sums[1::2], ref[0::2], ref[1::2], objective.beta)
        loss = losses.mean()
    else:
        loss, chosen_r, rejected_r = _orpo(model, ids, targets, batch.get("nll_targets"), objective.beta)
    stats = {"reward_chosen": chosen_r.sum(), "reward_rejected": rejected_r.sum(),
             "reward_accuracy": (chosen_r > rejected_r).sum().to(chosen_r.dtype),
             "reward_margin": (chosen_r - rejected_r).sum()}
    return loss, B, stats


def _orpo(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, nll_targets: torch.Tensor | None,
          beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ORPO's loss and rewards from one forward pass over the pairs' rows (2B, T)."""
    scoring = targets
    if nll_targets is not None:  # the preferred rows' likelihood term scores the prompt too
        scoring = targets.clone()
        scoring[0::2] = nll_targets
    logp, rows, at = scored_logps(model, ids, scoring)
    answer = targets.reshape(-1).index_select(0, at) != IGNORE
    n = ids.shape[0]
    sums = torch.zeros(n, device=logp.device, dtype=logp.dtype).index_add(0, rows, logp * answer)
    counts = torch.zeros(n, device=logp.device, dtype=logp.dtype).index_add(0, rows, answer.to(logp.dtype))
    means = sums / counts.clamp_min(1)
    preferred = rows % 2 == 0
    nll = -(logp * preferred).sum() / preferred.sum().clamp_min(1)
    ratio, chosen_r, rejected_r = odds_ratio_loss(means[0::2], means[1::2], beta)
    return nll - ratio.mean(), chosen_r, rejected_r


def _peft_model(model: nn.Module) -> nn.Module:
    """The peft model under DDP's and torch.compile's wrappers."""
    while not hasattr(model, "disable_adapter"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def adapters_off(model: nn.Module) -> Reference:
    """The reference of a LoRA run: the same model with its adapters switched off, in eval mode (no dropout)."""
    def reference(ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            with _peft_model(model).disable_adapter(), torch.no_grad():
                return answer_logps(model, ids, targets)[0]
        finally:
            model.train(was_training)
    return reference


def frozen_copy(model: nn.Module) -> Reference:
    """The reference of a full fine-tune: a frozen copy of the initial weights, in eval mode."""
    model.eval().requires_grad_(False)

    def reference(ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return answer_logps(model, ids, targets)[0]
    return reference


@torch.no_grad()
def preference_metrics(model: nn.Module, batches, objective: Preference, autocast=contextlib.nullcontext,
                       device: torch.device | None = None) -> dict[str, float]:
    """Mean loss and STATS over the given preference batches (a validation pass), and the pair count."""
    total, pairs = 0.0, 0
    sums = dict.fromkeys(STATS, 0.0)
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()} if device is not None else batch
        with autocast():
            loss, n, stats = preference_loss(model, batch, objective)
        total += loss.item() * n
        pairs += n
        for key in STATS:
            sums[key] += stats[key].item()
    out = {"loss": total / pairs if pairs else float("nan")}
    out.update({key: sums[key] / pairs if pairs else float("nan") for key in STATS})
    return {**out, "pairs": pairs}
