"""The tokenizer stage: train a byte-level BPE, or take a pretrained model's own tokenizer.

Either way the result is one `tokenizer.json` (plus `tokenizer_config.json`, so that
`transformers.AutoTokenizer` loads the folder too) and a `Codec` that knows the special tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tailor.artifacts import atomic_write_json
from tailor.errors import TailorError
from tailor.spec import Spec

EOS, PAD, SEP = "<|endoftext|>", "<|pad|>", "<|sep|>"


class Codec:
    """Text <-> ids with the special tokens a Tailor model is trained with."""

    def __init__(self, tokenizer: Tokenizer, eos: str = EOS, pad: str = PAD, sep: str = SEP):
        self.tokenizer = tokenizer
        tokenizer.encode_special_tokens = True  # text that spells "<|endoftext|>" stays text: no injection
        ids = {name: tokenizer.token_to_id(tok) for name, tok in (("eos", eos), ("pad", pad), ("sep", sep))}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise TailorError(f"tokenizer lacks the special token(s) {', '.join(missing)}")
        self.eos_id, self.pad_id, self.sep_id = ids["eos"], ids["pad"], ids["sep"]

    @classmethod
    def load(cls, folder: Path) -> Codec:
        folder = Path(folder)
        from tailor.deploy import encryption

        path = folder / "tokenizer.json"
        if not encryption.exists(path):
            raise TailorError(f"{folder}: no tokenizer.json")
        config = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").exists() else {}
        tokenizer = Tokenizer.from_str(encryption.read_bytes(path).decode("utf-8"))  # .enc: decrypted in memory
        return cls(tokenizer, config.get("eos_token", EOS), config.get("pad_token", PAD), config.get("sep_token", SEP))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def prompt(self, text: str) -> list[int]:
        """Ids the model continues to answer `text`: the input, then the separator."""
        return self.encode(text) + [self.sep_id]


def train_bpe(texts: Iterator[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    """A byte-level BPE (GPT-2's scheme): every string encodes, and decodes back exactly."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=[EOS, PAD, SEP], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def pretrained_tokenizer(source: str) -> tuple[Tokenizer, dict]:
    """A pretrained model's fast tokenizer (preset, folder, .gguf or hub id) with a separator added."""
    from transformers import AutoTokenizer

    from tailor.models.presets import resolve_source

    folder, gguf = resolve_source(source)
    try:
        hf = AutoTokenizer.from_pretrained(folder, gguf_file=gguf) if gguf else AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise TailorError(f"{source}: cannot load its tokenizer ({e})") from None
    tok: Tokenizer = hf.backend_tokenizer
    eos = hf.eos_token or EOS
    pad = hf.pad_token or eos
    sep = hf.sep_token or SEP
    tok.add_special_tokens([t for t in (eos, pad, sep) if tok.token_to_id(t) is None])
    return tok, {"eos_token": eos, "pad_token": pad, "sep_token": sep}


def _texts(records: list[dict], fields: list[str]) -> Iterator[str]:
    for record in records:
        for field in fields:
            yield record[field]


def run_tokenizer(spec: Spec, data_dir: Path, out_dir: Path) -> dict:
    """Write tokenizer.json, tokenizer_config.json and report.json into out_dir."""
    from tailor.data import load_split

    fields = spec.data.fields.used
    train = load_split(data_dir, "train")
    if spec.tokenizer.type == "pretrained":
        tok, special = pretrained_tokenizer(spec.tokenizer.source or spec.model.base)
    else:
        tok = train_bpe(_texts(train, fields), spec.tokenizer.vocab_size, spec.tokenizer.min_frequency)
        special = {"eos_token": EOS, "pad_token": PAD, "sep_token": SEP}
    tok.save(str(out_dir / "tokenizer.json"))
    atomic_write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": special["eos_token"], **special,
        "model_max_length": 1_000_000, "clean_up_tokenization_spaces": False})
    codec = Codec.load(out_dir)
    sample = list(_texts(load_split(data_dir, "validation") or train, fields))
    n_bytes = sum(len(t.encode("utf-8")) for t in sample)
    n_tokens = sum(len(ids) for ids in codec.encode_batch(sample))
    report = {"type": spec.tokenizer.type, "vocab_size": codec.vocab_size,
              "tokens_per_byte": round(n_tokens / max(n_bytes, 1), 4),
              "bytes_per_token": round(n_bytes / max(n_tokens, 1), 3)}
    atomic_write_json(out_dir / "report.json", report)
    return report
