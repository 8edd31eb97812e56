"""What a model family can do, as Protocols that evaluation, serving and export check.

A family states its capabilities by the methods it has; code that needs one asks
`isinstance(model, Capability)` (or `issubclass` of the family's class) rather than comparing
a family's name. Hugging Face models have none of these: they are read through transformers.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Backbone(Protocol):
    """Hidden states a task head reads, and a language-model forward that scores only given positions:
    forward(idx, targets=, position_ids=, scored_at=) -> (logits, loss), logits (N, vocab) at scored_at."""

    def features(self, idx: torch.Tensor, *args, **kwargs): ...

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, *args, **kwargs): ...


@runtime_checkable
class CachedDecoder(Protocol):
    """Decodes left-padded rows with a key/value cache per layer: new_caches(), then
    forward(ids, caches=, positions=, attention_mask=) for the prompt and each next token."""

    def new_caches(self) -> list[dict]: ...


@runtime_checkable
class StatefulDecoder(Protocol):
    """Decodes by carrying a recurrent state: prefill(right-padded idx, lengths) -> (logits, state),
    then step(next ids, state) -> (logits, state). Padding must follow the text (right padding)."""

    def prefill(self, idx: torch.Tensor, lengths: torch.Tensor): ...

    def step(self, idx: torch.Tensor, state=None): ...
