"""Using a trained model: find it, read prompts the way it was trained, and complete them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

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


def model_card(folder: Path) -> dict | None:
    """What the train stage recorded about a model's input format (config.json's `tailor`), if anything."""
    return json.loads((Path(folder) / "config.json").read_text()).get("tailor")


class PromptFormat:
    """How a Tailor-trained model reads a prompt and writes an answer: its model card and tokenizer.

    A question/answer model reads the input as it was trained (followed by the separator, or as
    the user's turn of its chat template) and its answer is trimmed; a corpus model continues text.
    `tailor generate`, the evaluate stage and the server all format prompts here.
    """

    def __init__(self, folder: Path):
        from tailor.tokenizer import Codec

        self.folder = Path(folder)
        self.card = model_card(self.folder) or {"format": "text"}
        self.codec = Codec.load(self.folder)
        # a chat model ends its turn with the template's end-of-turn token, which need not be the eos token
        self.eos_ids = {self.codec.eos_id} | ({self.codec.turn_end_id} if self.codec.turn_end_id is not None else set())
        self.pad_id = self.codec.pad_id
        self.name = self.card.get("name", self.folder.name)

    @property
    def pairs(self) -> bool:
        return self.card.get("format") in ("pairs", "chat")

    def encode_prompt(self, text: str) -> list[int]:
        """The ids the model continues; an empty text prompt starts from end-of-text, as GPT-2 does."""
        return self.codec.prompt(text) if self.pairs else (self.codec.encode(text) or [self.codec.eos_id])

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """A model with a chat template reads the conversation through it (one user message: exactly its
        training prompt); a separator-trained model answers the last user message; a corpus model
        continues a transcript."""
        if not any(m["role"] == "user" for m in messages):
            raise TailorError("messages: a chat needs at least one message with role 'user'")
        if self.codec.chat_template is not None:
            return self.codec.chat(messages)
        if self.pairs:
            return self.codec.prompt([m["content"] for m in messages if m["role"] == "user"][-1])
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return self.codec.encode(text)

    def decode(self, ids: list[int]) -> str:
        text = self.codec.decode(ids)
        return text.strip() if self.pairs else text

    def tokens_of(self, text: str) -> list[int]:
        return self.codec.encode(text)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # stop | length
    seconds: float


class Generator:
    """A trained model ready to answer: formats prompts the way it was trained.

    Answers are decoded by the serving engine (tailor.inference.engine), as `tailor serve` and the
    evaluate stage decode them: one decoding path. `model` (for scoring) loads on first use.
    """

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.folder = resolve_model_dir(path)
        self.format = PromptFormat(self.folder)
        self.card, self.codec = self.format.card, self.format.codec
        self.device = device
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from tailor.models import load_model

            self._model = load_model(self.folder, self.device).eval()
        return self._model

    def encode_prompt(self, prompt: str) -> list[int]:
        return self.format.encode_prompt(prompt)

    def complete(self, prompt: str, max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None, stop: list[str] | None = None) -> Completion:
        """One completion through the serving engine in process (no warm-up, nothing else in flight).

        The folder is the one the caller named, loaded as safetensors only; the server and the evaluate
        stage also verify it against its manifest."""
        from tailor.inference.local import answer_in_process

        start = time.perf_counter()
        (answer,), _ = answer_in_process(self.folder, [prompt], max_new_tokens, temperature, top_p, seed, warmup=0,
                                         device=self.device, stop=stop, verify=False)
        return Completion(answer.text, answer.prompt_tokens, answer.completion_tokens, answer.finish_reason,
                          time.perf_counter() - start)
