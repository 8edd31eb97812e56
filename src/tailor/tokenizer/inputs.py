"""Input ids as task heads read them: training, evaluation and the server's /v1/classify encode here."""

from __future__ import annotations

from tokenizers import Tokenizer

from tailor.labels import words_of
from tailor.spec.data import Fields
from tailor.tokenizer import Codec


class InputEncoder:
    """Input ids as task heads read them, truncated to block_size when given, with each token's word index.

    A pretrained encoder's tokenizer adds its own markers ([CLS] ... [SEP]); a Tailor tokenizer
    adds none, and the input then ends with the end-of-text token, so a head that reads the
    last position of a left-to-right model sees the whole text. Training, evaluation and the
    server's /v1/classify all encode inputs here.
    """

    def __init__(self, codec: Codec, block_size: int | None):
        tok = Tokenizer.from_str(codec.tokenizer.to_str())
        tok.encode_special_tokens = True
        self.append_eos = len(tok.encode("a", add_special_tokens=True).ids) == len(tok.encode("a", add_special_tokens=False).ids)
        if block_size is not None:
            tok.enable_truncation(max_length=block_size - (1 if self.append_eos else 0))
        self.tok, self.eos_id = tok, codec.eos_id

    def __call__(self, inputs: list, per_word: bool) -> tuple[list[list[int]], list[list[int | None]]]:
        """Ids and word indices of each input: a text, or (per_word) a list of words."""
        encodings = self.tok.encode_batch(inputs, is_pretokenized=per_word, add_special_tokens=True)
        end = [self.eos_id] if self.append_eos else []
        return [e.ids + end for e in encodings], [e.word_ids + ([None] if self.append_eos else []) for e in encodings]


def input_ids(fields: Fields, output: str, records: list[dict], codec: Codec,
              block_size: int | None) -> tuple[list[list[int]], list[list[int | None]]]:
    """Ids of each record's input (truncated to block_size when given) and each token's word index.

    fields: data.fields (the text is fields.input); output: problem.output (token-labels read words).
    """
    field = fields.input
    per_word = output == "token-labels"
    inputs = [words_of(r[field], r, field) for r in records] if per_word else [r[field] for r in records]
    return InputEncoder(codec, block_size)(inputs, per_word)
