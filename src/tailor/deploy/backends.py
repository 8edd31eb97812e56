"""The model side of batched decoding: prefill a padded batch, step it with a key/value cache, and
drop or add rows between steps. One backend for our Transformer, one for a transformers causal LM.

A batch's cache is left-padded: each row's real tokens are contiguous at the right end, `mask`
marks them, and `pos` holds each row's next position, so rows of different lengths share steps.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tailor.errors import TailorError


@dataclass
class KVState:
    """Per-layer [keys, values] tensors (B, heads, L, head_dim), the (B, L) mask of real tokens, next positions (B,)."""

    kv: list[list[torch.Tensor]]
    mask: torch.Tensor
    pos: torch.Tensor

    @property
    def rows(self) -> int:
        return self.mask.shape[0]


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows])
    return ids, mask


def select_rows(state: KVState, keep: list[int]) -> KVState:
    """The rows `keep` of a batch, with the columns that are padding in every kept row trimmed."""
    index = torch.tensor(keep, device=state.mask.device)
    mask = state.mask[index]
    start = int(mask.any(dim=0).float().argmax())  # first column some kept row uses
    kv = [[t[index][:, :, start:] for t in layer] for layer in state.kv]
    return KVState(kv, mask[:, start:], state.pos[index])


def merge_states(a: KVState, b: KVState) -> KVState:
    """One batch from two, the shorter cache padded on the left so that real tokens stay right-aligned."""
    width = max(a.mask.shape[1], b.mask.shape[1])

    def pad(t: torch.Tensor, dim: int) -> torch.Tensor:
        missing = width - t.shape[dim]
        if missing == 0:
            return t
        shape = list(t.shape)
        shape[dim] = missing
        return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)

    kv = [[torch.cat([pad(x, 2), pad(y, 2)]) for x, y in zip(la, lb)] for la, lb in zip(a.kv, b.kv)]
    return KVState(kv, torch.cat([pad(a.mask, 1), pad(b.mask, 1)]), torch.cat([a.pos, b.pos]))


class TailorBackend:
    """Our Transformer (a Tailor model folder) with its tokenizer and the prompt format it was trained on."""

    kind = "tailor"

    def __init__(self, folder: Path, device: str = "cpu"):
        from tailor.models import load_model
        from tailor.tokenizer import Codec

        self.folder = Path(folder)
        self.card = json.loads((self.folder / "config.json").read_text()).get("tailor", {"format": "text"})
        self.model = load_model(self.folder, device).eval()
        self.codec = Codec.load(self.folder)
        self.device = device
        self.block_size = self.model.config.block_size
        self.eos_ids = {self.codec.eos_id}
        self.pad_id = self.codec.pad_id
        self.name = self.card.get("name", self.folder.name)

    @property
    def pairs(self) -> bool:
        return self.card.get("format") == "pairs"

    def encode_prompt(self, text: str) -> list[int]:
        """The ids the model continues; an empty text prompt starts from end-of-text, as GPT-2 does."""
        return self.codec.prompt(text) if self.pairs else (self.codec.encode(text) or [self.codec.eos_id])

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """A question/answer model answers the last user message; a corpus model continues a transcript."""
        if self.pairs:
            users = [m["content"] for m in messages if m["role"] == "user"]
            if not users:
                raise TailorError("messages: a chat needs at least one message with role 'user'")
            return self.codec.prompt(users[-1])
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return self.codec.encode(text)

    def decode(self, ids: list[int]) -> str:
        text = self.codec.decode(ids)
        return text.strip() if self.pairs else text

    def tokens_of(self, text: str) -> list[int]:
        return self.codec.encode(text)

    @torch.no_grad()
    def prefill(self, rows: list[list[int]]) -> tuple[KVState, torch.Tensor]:
        ids, mask = _left_pad(rows, self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        caches: list[dict] = [{} for _ in self.model.h]
        logits, _ = self.model(ids, caches=caches, positions=positions, attention_mask=mask)
        state = KVState([[c["k"], c["v"]] for c in caches], mask, positions[:, -1] + 1)
        return state, logits[:, -1, :]

    @torch.no_grad()
    def step(self, state: KVState, next_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (B,); the state grows by one column; logits (B, vocab)."""
        mask = torch.cat([state.mask, torch.ones_like(state.mask[:, :1])], dim=1)
        caches = [{"k": k, "v": v} for k, v in state.kv]
        padded = not bool(state.mask.all())  # no padding left: the plain (faster) attention path applies
        logits, _ = self.model(next_ids[:, None].to(self.device), caches=caches, positions=state.pos[:, None],
                               attention_mask=mask if padded else None)
        state.kv, state.mask, state.pos = [[c["k"], c["v"]] for c in caches], mask, state.pos + 1
        return logits[:, -1, :]


class HFBackend:
    """A transformers causal LM folder (safetensors only) with its tokenizer and chat template."""

    kind = "hf"

    def __init__(self, folder: Path, device: str = "cpu"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.model = AutoModelForCausalLM.from_pretrained(self.folder, use_safetensors=True,
                                                          dtype=torch.float32).to(device).eval()
        self.device = device
        cfg = self.model.config
        self.block_size = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 2048)
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.name = self.folder.name
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def encode_prompt(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else min(self.eos_ids)
        return ids or [start]

    def encode_chat(self, messages: list[dict]) -> list[int]:
        if not self.tokenizer.chat_template:
            raise TailorError(f"{self.folder}: this model has no chat template; use /v1/completions")
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def tokens_of(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 kv: list[list[torch.Tensor]] | None) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        from transformers import DynamicCache

        cache = DynamicCache(kv) if kv else DynamicCache()
        out = self.model(input_ids=ids, attention_mask=mask.long(), position_ids=positions, use_cache=True,
                         **{self._cache_arg: cache}, **self._last_only)
        layers = getattr(out, self._cache_arg).layers
        return out.logits[:, -1, :], [[layer.keys, layer.values] for layer in layers]

    @torch.no_grad()
    def prefill(self, rows: list[list[int]]) -> tuple[KVState, torch.Tensor]:
        ids, mask = _left_pad(rows, self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, kv = self._forward(ids, mask, positions, None)
        return KVState(kv, mask, positions[:, -1] + 1), logits

    @torch.no_grad()
    def step(self, state: KVState, next_ids: torch.Tensor) -> torch.Tensor:
        mask = torch.cat([state.mask, torch.ones_like(state.mask[:, :1])], dim=1)
        logits, kv = self._forward(next_ids[:, None].to(self.device), mask, state.pos[:, None], state.kv)
        state.kv, state.mask, state.pos = kv, mask, state.pos + 1
        return logits


def refuse_pickles(folder: Path) -> None:
    """Weights load only from safetensors: a folder whose weights are pickles is refused, never unpickled."""
    pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    if pickles and not any(folder.glob("*.safetensors")) and not any(folder.glob("*.safetensors.enc")):
        raise TailorError(f"{folder}: weights are pickle files ({', '.join(sorted(pickles))}); only safetensors are "
                          "loaded, because unpickling runs code. Convert them with safetensors first")


def load_backend(folder: Path, device: str = "cpu"):
    """The backend for a model folder: a Tailor transformer, or a transformers causal LM."""
    from tailor.models import MODEL_TYPE

    folder = Path(folder)
    refuse_pickles(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") == MODEL_TYPE:
        return TailorBackend(folder, device)
    return HFBackend(folder, device)
