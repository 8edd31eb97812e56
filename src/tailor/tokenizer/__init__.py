"""The tokenizer stage: train a tokenizer of any kind, or take a pretrained model's own.

Either way the result is one `tokenizer.json` (plus `tokenizer_config.json`, so that
`transformers.AutoTokenizer` loads the folder too), a report on held-out text, and a `Codec`
that knows the special tokens and how the model was taught to read a prompt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tokenizers import Tokenizer

from tailor.artifacts import json_text
from tailor.errors import TailorError
from tailor.spec.data import Fields
from tailor.spec.model import TokenizerSpec
from tailor.stage import Stage
from tailor.tokenizer.train import EOS, PAD, SEP, promises_round_trip, train_bpe, train_tokenizer

__all__ = ["Codec", "EOS", "PAD", "SEP", "pretrained_tokenizer", "run_tokenizer", "train_bpe", "train_tokenizer"]

PLACEHOLDER = "\x00prompt\x00"  # stands for the user's text while a chat template is rendered


class Codec:
    """Text <-> ids with the special tokens a Tailor model is trained with.

    A prompt is the input followed by the separator token, or, for a tokenizer with a chat
    template, the input as the user's turn of that template with the assistant's turn opened.
    """

    def __init__(self, tokenizer: Tokenizer, eos: str = EOS, pad: str = PAD, sep: str | None = SEP,
                 chat_template: str | None = None):
        self.tokenizer = tokenizer
        tokenizer.encode_special_tokens = True  # text that spells "<|endoftext|>" stays text: no injection
        names = {"eos": eos, "pad": pad, **({"sep": sep} if chat_template is None else {})}
        ids = {name: tokenizer.token_to_id(tok) if tok else None for name, tok in names.items()}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise TailorError(f"tokenizer lacks the special token(s) {', '.join(missing)}")
        self.eos_id, self.pad_id = ids["eos"], ids["pad"]
        self.sep_id = tokenizer.token_to_id(sep) if sep else None
        self.chat_template = chat_template
        specials = {i: t.content for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
        self.special_ids = set(specials)
        # cuts a chat template's text at its special tokens (the capture keeps them, longest first)
        self.special_pattern = re.compile("(" + "|".join(re.escape(t) for t in sorted(
            specials.values(), key=len, reverse=True)) + ")") if specials else None
        self._hf = self._marker_tok = None  # built on first use: a pretrained vocabulary takes a while to copy
        self._prefix: list[int] = []
        self._suffix: list[int] = [self.sep_id] if chat_template is None else []
        self.turn_end_id: int | None = None  # the token that closes an assistant turn of the chat template
        if chat_template is not None:
            self._prefix, self._suffix = self._chat_parts()
            self.turn_end_id = self._turn_end()

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat template rendered for `messages` (the assistant's turn opened, unless told otherwise)."""
        from transformers import PreTrainedTokenizerFast

        if self._hf is None:
            self._hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(self.tokenizer.to_str()),
                                               eos_token=self.tokenizer.id_to_token(self.eos_id))
            self._hf.chat_template = self.chat_template
        try:
            return self._hf.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
        except Exception as e:  # jinja raises many kinds for a broken template
            raise TailorError(f"tokenizer chat_template cannot be rendered ({e})") from None

    def markers(self, text: str) -> list[int]:
        """Ids of template text, its markers read as special tokens (unlike a message's own text)."""
        if self._marker_tok is None:
            self._marker_tok = Tokenizer.from_str(self.tokenizer.to_str())
            self._marker_tok.encode_special_tokens = False
        return self._marker_tok.encode(text, add_special_tokens=False).ids if text else []

    def _chat_parts(self) -> tuple[list[int], list[int]]:
        """Ids before and after the user's text in the rendered template (its markers read as special tokens)."""
        text = self.render([{"role": "user", "content": PLACEHOLDER}])
        if text.count(PLACEHOLDER) != 1:
            raise TailorError("tokenizer chat_template does not place the user's message exactly once")
        before, after = text.split(PLACEHOLDER)
        return self.markers(before), self.markers(after)

    def _turn_end(self) -> int | None:
        """The special token the template writes after an assistant's message (None: it writes none)."""
        from tailor.tokenizer.chat import segments

        try:
            parts = segments(self, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                             False)
        except TailorError:  # a template that renders no conversation of this shape: prompts still work
            return None
        after = [ids for k, (ids, owner) in enumerate(parts) if k and parts[k - 1][1] == 1]
        return next((i for i in (after[0] if after else []) if i in self.special_ids), None)

    def chat(self, messages: list[dict]) -> list[int]:
        """Ids of a conversation through the chat template, the assistant's turn opened. Each message's
        text is encoded as text, so a message cannot spell the template's markers; one user message
        gives exactly `prompt(text)`, and a conversation the ids its next assistant turn was trained after."""
        from tailor.tokenizer.chat import segments

        if self.chat_template is None:
            raise TailorError("this tokenizer has no chat template")
        return [i for ids, _ in segments(self, messages, add_generation_prompt=True) for i in ids]

    @classmethod
    def load(cls, folder: Path) -> Codec:
        from tailor import encryption

        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not encryption.exists(path):
            raise TailorError(f"{folder}: no tokenizer.json")
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        tokenizer = Tokenizer.from_str(encryption.read_bytes(path).decode("utf-8"))  # .enc: decrypted in memory
        return cls(tokenizer, config.get("eos_token", EOS), config.get("pad_token", PAD),
                   config.get("sep_token", SEP), config.get("chat_template"))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def prompt_overhead(self) -> int:
        """Tokens a prompt adds around the input."""
        return len(self._prefix) + len(self._suffix)

    def encode(self, text: str) -> list[int]:
        # encode_batch releases the GIL while it works (encode holds it): a long text tokenized in a
        # server's worker thread then does not stall its event loop. Same ids, same cost for one text.
        return self.tokenizer.encode_batch([text], add_special_tokens=False)[0].ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def wrap_prompt(self, ids: list[int]) -> list[int]:
        """Encoded input -> the ids the model continues to answer it."""
        return self._prefix + ids + self._suffix

    def prompt(self, text: str) -> list[int]:
        """Ids the model continues to answer `text`."""
        return self.wrap_prompt(self.encode(text))


def pretrained_tokenizer(source: str) -> tuple[Tokenizer, dict]:
    """A pretrained model's fast tokenizer (preset, folder, .gguf or hub id) and its tokenizer_config entries.

    Its own end, padding and separator tokens are used where it has them; a tokenizer with a chat
    template needs no separator. Tokens added here are listed under `tailor_added_tokens`, so the
    model stage knows how many embedding rows to add.
    """
    from transformers import AutoTokenizer

    from tailor.presets import resolve_source

    folder, gguf = resolve_source(source)
    try:
        hf = AutoTokenizer.from_pretrained(folder, gguf_file=gguf) if gguf else AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise TailorError(f"{source}: cannot load its tokenizer ({e})") from None
    if not getattr(hf, "is_fast", False):
        raise TailorError(f"{source}: its tokenizer has no tokenizer.json (fast) form")
    tok: Tokenizer = hf.backend_tokenizer
    tok.no_padding()  # some ship with fixed-length padding and truncation; batches pad and cut themselves
    tok.no_truncation()
    template = hf.chat_template if isinstance(hf.chat_template, str) else None
    eos = hf.eos_token or hf.sep_token or EOS
    pad = _pad_token(hf, eos, template)
    sep = hf.sep_token or (None if template else SEP)
    added = [t for t in dict.fromkeys((eos, pad, sep)) if t and tok.token_to_id(t) is None]
    tok.add_special_tokens(added)
    config = {"eos_token": eos, "pad_token": pad, "sep_token": sep, "tailor_added_tokens": added}
    if hf.cls_token:
        config["cls_token"] = hf.cls_token
    if template:
        config["chat_template"] = template
    return tok, config


def _pad_token(hf, eos: str, template: str | None) -> str:
    """A padding token that is not the end token: many tokenizers ship pad = eos, and a collator that masks
    padding by its id then never trains the end of a turn (the most reported cause of models that never stop).
    The tokenizer's own pad, else its unknown token where no template writes it, else a new `<|pad|>`."""
    if hf.pad_token and hf.pad_token != eos:
        return hf.pad_token
    unk = hf.unk_token
    if unk and unk != eos and unk != hf.bos_token and not (template and unk in template):
        return unk
    return PAD


def _texts(table, fields: list[str], chat: str | None = None) -> list[str]:
    """Every record's `fields` in record order, read column by column (list values joined by spaces; the
    `chat` field's conversations as the text of each message)."""
    import pyarrow as pa

    from tailor.data.chat import conversation

    if table is None:
        return []
    columns = []
    for field in fields:
        column = table.column(field)
        values = column.to_pylist()
        if field == chat:
            values = ["\n".join(m["content"] for m in conversation(v)) for v in values]
        elif not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            values = [" ".join(map(str, v)) if isinstance(v, list) else v for v in values]
        columns.append(values)
    return columns[0] if len(columns) == 1 else [text for row in zip(*columns) for text in row]


def text_fields(fields: Fields, output: str) -> list[str]:
    """Record fields the tokenizer reads: every model field for text, only the input for labels and scores."""
    return fields.used if output == "text" else [fields.input]


def run_tokenizer(out: Path, *, tokenizer: TokenizerSpec, fields: Fields, output: str, base: str, data_dir: Path,
                  progress=None) -> dict:
    """Write tokenizer.json, tokenizer_config.json and report.json into `out`.

    tokenizer: the spec's section; fields, output: what the model reads; base: model.base, whose own
    tokenizer a pretrained type takes unless tokenizer.source names another. The files are written
    plainly: the pipeline commits the stage folder atomically (and syncs it).
    """
    from tailor.splits import load_table
    from tailor.tokenizer.report import tokenizer_report

    out_dir = Path(out)
    chat = fields.messages
    fields = text_fields(fields, output)
    train = _texts(load_table(data_dir, "train", fields), fields, chat)  # a list: tokenizers reads it in batches
    cfg = tokenizer
    if cfg.type == "pretrained":
        tok, config = pretrained_tokenizer(cfg.source or base)
    else:
        tok = train_tokenizer(lambda: train, cfg)
        config = {"eos_token": EOS, "pad_token": PAD, "sep_token": SEP}
    tok.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json_text({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": config["eos_token"], **config,
        "model_max_length": 1_000_000, "clean_up_tokenization_spaces": False}), encoding="utf-8")
    codec = Codec(tok, config["eos_token"], config["pad_token"], config["sep_token"], config.get("chat_template"))
    validation = load_table(data_dir, "validation", fields)
    sample = _texts(validation, fields, chat) if validation is not None and validation.num_rows else train
    report = {"type": cfg.type, "vocab_size": codec.vocab_size,
              "round_trip_promised": cfg.type != "pretrained" and promises_round_trip(cfg),
              **tokenizer_report(codec.tokenizer, cfg.type, sample)}
    (out_dir / "report.json").write_text(json_text(report), encoding="utf-8")
    return {k: report[k] for k in ("type", "vocab_size", "tokens_per_word", "tokens_per_byte", "unknown_rate",
                                   "fallback_rate")}


STAGE = Stage("tokenizer", run=run_tokenizer, upstream=("data",),
              reads={"tokenizer": "tokenizer", "fields": "data.fields", "output": "problem.output",
                     "base": "model.base"})
