"""The serving engine's backend for encoder-decoder models (T5, BART).

A prompt is encoded once, at prefill; each step runs the decoder over the answer so far, reading
the encoded prompt. Decoder rows are right-padded and each row's logits are read at its own last
token: under the decoder's causal attention the padding after a row's tokens cannot change them,
and absolute positions (BART's) stay those of training. The decoder is run whole at every step,
without a key/value cache: answers are short and this keeps rows of different ages in one batch
simple to add and drop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch



def _pad_right(t: torch.Tensor, width: int, value) -> torch.Tensor:
    """`t` (B, L, ...) padded with `value` along dim 1 to `width`."""
    missing = width - t.shape[1]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[1] = missing
    return torch.cat([t, torch.full(shape, value, dtype=t.dtype, device=t.device)], dim=1)


@dataclass
class Seq2SeqState:
    """The encoded prompts (B, S, D) and their mask (B, S); the decoder's ids so far (B, T) and each row's length (B,)."""

    encoded: torch.Tensor
    mask: torch.Tensor
    decoded: torch.Tensor
    lengths: torch.Tensor
    pad_id: int

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    def select(self, keep: list[int]) -> Seq2SeqState:
        """The rows `keep`, trimmed to the longest kept prompt and answer."""
        index = torch.tensor(keep, device=self.mask.device)
        mask = self.mask[index]
        width = int(mask.sum(1).max())
        lengths = self.lengths[index]
        return Seq2SeqState(self.encoded[index][:, :width], mask[:, :width],
                            self.decoded[index][:, :int(lengths.max())], lengths, self.pad_id)

    def merge(self, other: Seq2SeqState) -> Seq2SeqState:
        """One batch from two, each padded on the right to the other's widths."""
        s = max(self.mask.shape[1], other.mask.shape[1])
        t = max(self.decoded.shape[1], other.decoded.shape[1])
        return Seq2SeqState(torch.cat([_pad_right(self.encoded, s, 0.0), _pad_right(other.encoded, s, 0.0)]),
                            torch.cat([_pad_right(self.mask, s, 0), _pad_right(other.mask, s, 0)]),
                            torch.cat([_pad_right(self.decoded, t, self.pad_id), _pad_right(other.decoded, t, self.pad_id)]),
                            torch.cat([self.lengths, other.lengths]), self.pad_id)


class Seq2SeqBackend:
    """A transformers encoder-decoder folder (safetensors only): prompts read as in training, answers decoded greedily
    or sampled by the engine like any other model's."""

    kind, generates = "seq2seq", True

    def __init__(self, folder: Path, device: str = "cpu"):
        from tailor.inference.backends import open_hf_folder

        open_hf_folder(self, folder, device, "AutoModelForSeq2SeqLM")
        start = self.model.generation_config.decoder_start_token_id
        self.start_id = start if start is not None else self.model.config.decoder_start_token_id

    def _logits(self, state: Seq2SeqState) -> torch.Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=state.encoded), attention_mask=state.mask,
                         decoder_input_ids=state.decoded, use_cache=False)
        return out.logits[torch.arange(state.rows, device=out.logits.device), state.lengths - 1]

    @torch.no_grad()
    def prefill(self, rows: list[list[int]]) -> tuple[Seq2SeqState, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        encoded = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        decoded = torch.full((len(rows), 1), self.start_id, dtype=torch.long, device=self.device)
        state = Seq2SeqState(encoded, mask, decoded, torch.ones(len(rows), dtype=torch.long, device=self.device),
                             self.pad_id)
        return state, self._logits(state)

    @torch.no_grad()
    def step(self, state: Seq2SeqState, next_ids: torch.Tensor) -> torch.Tensor:
        state.decoded = _pad_right(state.decoded, int(state.lengths.max()) + 1, self.pad_id)
        state.decoded[torch.arange(state.rows, device=state.decoded.device), state.lengths] = next_ids.to(self.device)
        state.lengths = state.lengths + 1
        return self._logits(state)
