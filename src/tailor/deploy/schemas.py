"""Request bodies of the OpenAI-compatible routes (the fields Tailor honours; others are ignored, as OpenAI's
clients send them freely) and of the feedback route."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable(value):
    """A JSON string may carry a lone surrogate ("\\ud800"), which no tokenizer can read: refused here (422)."""
    for i, text in enumerate([value] if isinstance(value, str) else value or []):
        if _SURROGATE.search(text):
            where = "" if isinstance(value, str) else f"item {i} "
            raise ValueError(f"{where}contains a lone UTF-16 surrogate (U+D800..U+DFFF), which is not text; send "
                             "valid Unicode")
    return value


# every string a request hands to a tokenizer or stores goes through one of these
Text = Annotated[str, AfterValidator(_encodable)]
Texts = Annotated[str | list[str], AfterValidator(_encodable)]


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: Annotated[str | list[str] | None, AfterValidator(_encodable)] = Field(None, description="up to 4 strings; the answer ends before the first")
    stream: bool = False
    n: int = Field(1, ge=1, le=1, description="one choice per prompt")

    @model_validator(mode="after")
    def _stops(self):
        stops = self.stop_list
        if len(stops) > 4 or any(len(s) > 200 for s in stops):
            raise ValueError("stop: at most 4 strings of at most 200 characters")
        return self

    @property
    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Sampling):
    prompt: Texts = Field(description="a prompt, or several (one choice each)")
    max_tokens: int | None = Field(16, ge=1, le=1_000_000)

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @model_validator(mode="after")
    def _some(self):
        if isinstance(self.prompt, list) and not 1 <= len(self.prompt) <= 64:
            raise ValueError("prompt: a list of 1 to 64 prompts")
        if self.stream and isinstance(self.prompt, list) and len(self.prompt) > 1:
            raise ValueError("stream: streams one prompt at a time")
        return self


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Text


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1, max_length=256)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)

    @property
    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: Texts = Field(description="a text, or a list of 1 to 64 texts (token labels: words split on "
                                               "whitespace)")
    top_k: int = Field(1, ge=1, le=100, description="labels listed per text (per word for token labels), most "
                                                    "probable first")

    @property
    def inputs(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    @model_validator(mode="after")
    def _some(self):
        if isinstance(self.input, list) and not 1 <= len(self.input) <= 64:
            raise ValueError("input: a list of 1 to 64 texts")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: Text = Field(min_length=1, max_length=100, description="the id of a completion this server gave")
    correct: bool | None = Field(None, description="was the answer right")
    rating: float | None = Field(None, ge=0, le=5)
    correction: Text | None = Field(None, max_length=20_000, description="the answer it should have given")

    @model_validator(mode="after")
    def _something(self):
        if self.correct is None and self.rating is None and self.correction is None:
            raise ValueError("give at least one of correct, rating, correction")
        return self
