"""Using a trained model: find it, load it with its tokenizer, and complete prompts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tailor.errors import TailorError


def resolve_model_dir(path: str | Path) -> Path:
    """A run directory (its trained model), a train stage folder, or a model folder itself."""
    path = Path(path)
    for candidate in (path / "train" / "model", path / "model", path):
        if (candidate / "config.json").is_file() and ((candidate / "tokenizer.json").is_file()
                                                     or (candidate / "tokenizer.json.enc").is_file()):
            return candidate
    raise TailorError(f"{path}: neither a finished run (no train/model/) nor a model folder "
                      "(config.json + tokenizer.json)")


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop | length
    seconds: float


class Generator:
    """A trained model ready to answer: formats prompts the way it was trained."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        from tailor.models import load_model
        from tailor.tokenizer import Codec

        self.folder = resolve_model_dir(path)
        self.card = json.loads((self.folder / "config.json").read_text()).get("tailor", {"format": "text"})
        self.model = load_model(self.folder, device).eval()
        self.codec = Codec.load(self.folder)
        self.device = device

    def encode_prompt(self, prompt: str) -> list[int]:
        return self.codec.prompt(prompt) if self.card.get("format") == "pairs" else self.codec.encode(prompt)

    @torch.no_grad()
    def complete(self, prompt: str, max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, stop: list[str] | None = None) -> Completion:
        start = time.perf_counter()
        from tailor.models import context_length, generate_ids

        ids = self.encode_prompt(prompt)
        limit = context_length(self.model)
        if len(ids) >= limit:
            raise TailorError(f"the prompt is {len(ids)} tokens; this model reads at most {limit - 1}")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        out = generate_ids(self.model, torch.tensor([ids], device=self.device), max_new_tokens, temperature, top_p,
                           stop_ids={self.codec.eos_id}, generator=generator)[0, len(ids):].tolist()
        finish = "stop" if out and out[-1] == self.codec.eos_id else "length"
        text = self.codec.decode(out)
        for s in stop or []:
            if s and s in text:
                text, finish = text[: text.index(s)], "stop"
        return Completion(text.strip() if self.card.get("format") == "pairs" else text, len(ids), len(out), finish,
                          time.perf_counter() - start)
