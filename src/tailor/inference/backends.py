"""The model side of batched decoding: prefill a batch of prompts, step it one token at a time, and
drop or add rows between steps. One backend per family: our Transformer and a transformers causal
LM (a key/value cache), our recurrent networks (a recurrent state); task-head models classify
(tailor.inference.classifier).

Every backend has a `name`, `block_size`, `eos_ids`, `generates`, a `format` (the text side:
`encode_prompt`, `encode_chat`, `decode`, `tokens_of`; a Tailor-trained model's PromptFormat, else
its own HF tokenizer) and `prefill(rows) -> (state, logits)`, `step(state, next_ids) -> logits`,
where a state can `merge` with another and `select` rows.

A transformer batch's cache is left-padded: each row's real tokens are contiguous at the right end,
`mask` marks them, and `pos` holds each row's next position, so rows of different lengths share steps.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tailor.errors import TailorError
from tailor.inference import PromptFormat, model_card


@dataclass
class KVState:
    """Per-layer [keys, values] tensors (B, heads, L, head_dim), the (B, L) mask of real tokens, next positions (B,).

    mask None: every column of every row is real (a lone prompt, or prompts of one length), the batch
    steps as generate() does, and the mask is made only when a merge needs it.
    """

    kv: list[list[torch.Tensor]]
    mask: torch.Tensor | None
    pos: torch.Tensor

    @property
    def rows(self) -> int:
        return self.pos.shape[0]

    def full_mask(self) -> torch.Tensor:
        """The (B, L) mask, made when it is None (all real)."""
        if self.mask is not None:
            return self.mask
        return torch.ones(self.rows, self.kv[0][0].shape[2], dtype=torch.bool, device=self.pos.device)

    def select(self, keep: list[int]) -> KVState:
        """The rows `keep`, with the columns that are padding in every kept row trimmed."""
        index = torch.tensor(keep, device=self.pos.device)
        if self.mask is None:
            return KVState([[t[index] for t in layer] for layer in self.kv], None, self.pos[index])
        mask = self.mask[index]
        start = int(mask.any(dim=0).float().argmax())  # first column some kept row uses
        kv = [[t[index][:, :, start:] for t in layer] for layer in self.kv]
        return KVState(kv, mask[:, start:], self.pos[index])

    def merge(self, other: KVState) -> KVState:
        """One batch from two, the shorter cache padded on the left so that real tokens stay right-aligned."""
        mine, theirs = self.full_mask(), other.full_mask()
        width = max(mine.shape[1], theirs.shape[1])

        def pad(t: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - t.shape[dim]
            if missing == 0:
                return t
            shape = list(t.shape)
            shape[dim] = missing
            return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)

        kv = [[torch.cat([pad(x, 2), pad(y, 2)]) for x, y in zip(la, lb)] for la, lb in zip(self.kv, other.kv)]
        return KVState(kv, torch.cat([pad(mine, 1), pad(theirs, 1)]), torch.cat([self.pos, other.pos]))


@dataclass
class RecurrentState:
    """A recurrent network's state per row: (layers, B, hidden) tensors, h (RNN, GRU) or h and c (LSTM)."""

    tensors: tuple[torch.Tensor, ...]

    @property
    def rows(self) -> int:
        return self.tensors[0].shape[1]

    def select(self, keep: list[int]) -> RecurrentState:
        index = torch.tensor(keep, device=self.tensors[0].device)
        return RecurrentState(tuple(t[:, index] for t in self.tensors))

    def merge(self, other: RecurrentState) -> RecurrentState:
        return RecurrentState(tuple(torch.cat([a, b], dim=1) for a, b in zip(self.tensors, other.tensors)))


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows])
    return ids, mask


def _load_own(backend, folder: Path, device: str) -> None:
    """Give a backend one of our model folders: the model, the prompt format it was trained on, its limits and ids."""
    from tailor.models import load_model

    backend.folder = Path(folder)
    backend.format = PromptFormat(backend.folder)
    backend.model = load_model(backend.folder, device).eval()
    backend.device = device
    backend.block_size = backend.model.config.block_size
    backend.eos_ids, backend.pad_id, backend.name = backend.format.eos_ids, backend.format.pad_id, backend.format.name


class TailorBackend:
    """Our Transformer (a Tailor model folder) with its tokenizer and the prompt format it was trained on."""

    kind, generates = "tailor", True

    def __init__(self, folder: Path, device: str = "cpu"):
        _load_own(self, folder, device)

    @torch.no_grad()
    def prefill(self, rows: list[list[int]]) -> tuple[KVState, torch.Tensor]:
        ids, mask = _left_pad(rows, self.pad_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        caches: list[dict] = self.model.new_caches()
        padded = not bool(mask.all())
        if not padded:  # a lone request always: the plain causal path generate() takes
            logits, _ = self.model(ids, caches=caches)
        else:
            logits, _ = self.model(ids, caches=caches, positions=positions, attention_mask=mask)
        state = KVState([[c["k"], c["v"]] for c in caches], mask if padded else None, positions[:, -1] + 1)
        return state, logits[:, -1, :]

    @torch.no_grad()
    def step(self, state: KVState, next_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token per row (B,); the state grows by one column; logits (B, vocab)."""
        caches = [{"k": k, "v": v} for k, v in state.kv]
        ids = next_ids[:, None].to(self.device)
        if state.mask is None:  # no padding: generate()'s own step (positions follow the cache; no mask to grow)
            logits, _ = self.model(ids, caches=caches)
        else:
            mask = torch.cat([state.mask, torch.ones_like(state.mask[:, :1])], dim=1)
            padded = not bool(state.mask.all())  # no padding left: the plain (faster) attention path applies
            logits, _ = self.model(ids, caches=caches, positions=state.pos[:, None],
                                   attention_mask=mask if padded else None)
            state.mask = mask
        state.kv, state.pos = [[c["k"], c["v"]] for c in caches], state.pos + 1
        return logits[:, -1, :]


class RecurrentBackend:
    """Our RNN/LSTM/GRU language model: prompts of any lengths read at once (packed), then one token per row a step.

    Its limits are those `tailor generate` applies: prompt and answer within the training window.
    """

    kind, generates = "recurrent", True

    def __init__(self, folder: Path, device: str = "cpu"):
        _load_own(self, folder, device)
        self._lstm = self.model.config.cell == "lstm"

    def _model_state(self, state: RecurrentState):
        return state.tensors if self._lstm else state.tensors[0]

    def _state(self, raw) -> RecurrentState:
        return RecurrentState(tuple(raw) if self._lstm else (raw,))

    @torch.no_grad()
    def prefill(self, rows: list[list[int]]) -> tuple[RecurrentState, torch.Tensor]:
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.tensor([r + [self.pad_id] * (int(lengths.max()) - len(r)) for r in rows], device=self.device)
        logits, raw = self.model.prefill(ids, lengths)
        return self._state(raw), logits

    @torch.no_grad()
    def step(self, state: RecurrentState, next_ids: torch.Tensor) -> torch.Tensor:
        logits, raw = self.model.step(next_ids[:, None].to(self.device), self._model_state(state))
        state.tensors = self._state(raw).tensors
        return logits[:, -1, :]


class HFTokenizerFormat:
    """The text side of a transformers model folder Tailor did not train: its own tokenizer and chat template."""

    def __init__(self, folder: Path, model):
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        eos = model.generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.name = self.folder.name

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


def open_hf_folder(backend, folder: Path, device: str, auto_class: str) -> None:
    """Load a transformers folder (safetensors only) onto `backend`: its model in eval mode, the prompt format it
    was trained with (a Tailor model card) or its own tokenizer's, its context and its eos, pad and name."""
    import transformers

    from tailor.models.pretrained import context_of, quiet_transformers

    quiet_transformers()
    backend.folder, backend.device = Path(folder), device
    backend.model = getattr(transformers, auto_class).from_pretrained(backend.folder, use_safetensors=True,
                                                                      dtype=torch.float32).to(device).eval()
    backend.format = (PromptFormat(backend.folder) if model_card(backend.folder)
                      else HFTokenizerFormat(backend.folder, backend.model))
    backend.block_size = context_of(backend.model)
    backend.eos_ids, backend.pad_id, backend.name = backend.format.eos_ids, backend.format.pad_id, backend.format.name


class HFBackend:
    """A transformers causal LM folder (safetensors only).

    Fine-tuned by Tailor (its config carries the model card), it reads prompts as it was trained,
    through the chat template where its tokenizer has one, exactly as `tailor generate` does;
    any other folder uses its own tokenizer and chat template.
    """

    kind, generates = "hf", True

    def __init__(self, folder: Path, device: str = "cpu"):
        open_hf_folder(self, folder, device, "AutoModelForCausalLM")
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

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
        mask = state.full_mask()
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
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
    """The backend for any model folder a run produces: a language model of each family, or a task head."""
    from tailor.models import FAMILIES
    from tailor.models.family import CachedDecoder, StatefulDecoder
    from tailor.models.pretrained import head_from_config

    folder = Path(folder)
    refuse_pickles(folder)
    config = json.loads((folder / "config.json").read_text())
    ours = config.get("model_type") in FAMILIES
    head = config.get("head", "causal_lm") if ours else head_from_config(config)
    if head == "seq2seq_lm":
        from tailor.inference.seq2seq import Seq2SeqBackend

        return Seq2SeqBackend(folder, device)
    if head != "causal_lm":
        from tailor.inference.classifier import ClassifierBackend

        return ClassifierBackend(folder, device)
    family = FAMILIES[config["model_type"]][0] if ours else None
    if family is not None and issubclass(family, CachedDecoder):
        return TailorBackend(folder, device)
    if family is not None and issubclass(family, StatefulDecoder):
        return RecurrentBackend(folder, device)
    return HFBackend(folder, device)
