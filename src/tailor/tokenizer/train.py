"""Training a tokenizer of each kind into one `tokenizers.Tokenizer` (saved as tokenizer.json).

Every kind runs the same chain: normalize -> pre-tokenize -> model -> decode. `bpe` is GPT-2's
byte-level BPE; `char_bpe`, `unigram` and `sentencepiece` mark word boundaries with "▁" as
SentencePiece does and, with byte fallback, spell unseen characters as byte tokens <0xNN>;
`wordpiece` is BERT's scheme and is lossy (whitespace is normalised, unseen characters are [UNK]).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from tailor.errors import TailorError
from tailor.spec.model import TokenizerSpec

EOS, PAD, SEP = "<|endoftext|>", "<|pad|>", "<|sep|>"
SPECIALS = [EOS, PAD, SEP]
BYTE_TOKENS = [f"<0x{b:02X}>" for b in range(256)]
UNK = {"char_bpe": "<unk>", "unigram": "<unk>", "sentencepiece": "<unk>", "wordpiece": "[UNK]"}
META = "▁"  # SentencePiece's word-boundary mark
ROUND_TRIP = {"bpe", "char_bpe", "unigram", "sentencepiece"}  # kinds whose decode(encode(x)) gives x back

Texts = Callable[[], Iterable[str]]  # the training texts, afresh on each call


def promises_round_trip(cfg: TokenizerSpec) -> bool:
    """Whether decode(encode(x)) == normalize(x) for every x (without a literal '▁' for the '▁' kinds)."""
    return cfg.type in ROUND_TRIP and (cfg.type == "bpe" or cfg.byte_fallback)


def make_normalizer(cfg: TokenizerSpec) -> normalizers.Normalizer | None:
    """The spec's Unicode form and lowercasing as a tokenizers normalizer (None: text is kept as is)."""
    steps = {"nfc": [normalizers.NFC()], "nfkc": [normalizers.NFKC()], "none": []}[cfg.normalization]
    steps += [normalizers.Lowercase()] if cfg.lowercase else []
    return normalizers.Sequence(steps) if steps else None


def _metaspace(tok: Tokenizer, byte_fallback: bool) -> None:
    # prepend_scheme "never": a leading space is kept as text, so leading whitespace round-trips
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="never", split=True)
    meta = decoders.Metaspace(replacement=META, prepend_scheme="never", split=True)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), meta]) if byte_fallback else meta


def _budget(cfg: TokenizerSpec, reserved: int) -> int:
    """Vocabulary left for learned tokens once specials and byte tokens are counted; an error if none is."""
    learned = cfg.vocab_size - reserved - len(cfg.special_tokens)
    if learned < 2:
        raise TailorError(f"tokenizer.vocab_size: {cfg.vocab_size} is too small for type {cfg.type!r}: "
                          f"{reserved + len(cfg.special_tokens)} ids are reserved (special tokens"
                          f"{' and 256 byte tokens' if reserved >= 256 else ''}); use at least "
                          f"{reserved + len(cfg.special_tokens) + 64}")
    return learned


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int,
              normalizer: normalizers.Normalizer | None = None) -> Tokenizer:
    """A byte-level BPE (GPT-2's scheme): every string encodes, and decodes back exactly."""
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                  special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return tok


def _char_bpe(texts: Texts, cfg: TokenizerSpec) -> Tokenizer:
    unk = None if cfg.byte_fallback else UNK["char_bpe"]
    tok = Tokenizer(models.BPE(unk_token=unk))
    _metaspace(tok, cfg.byte_fallback)
    specials = SPECIALS + ([unk] if unk else [])
    vocab = _budget(cfg, len(specials) + (256 if cfg.byte_fallback else 0))
    tok.train_from_iterator(texts(), trainers.BpeTrainer(vocab_size=vocab + len(specials), special_tokens=specials,
                                                         min_frequency=cfg.min_frequency, show_progress=False))
    return _add_byte_fallback(tok) if cfg.byte_fallback else tok


def _wordpiece(texts: Texts, cfg: TokenizerSpec) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token=UNK["wordpiece"]))
    chosen = make_normalizer(cfg)
    tok.normalizer = normalizers.Sequence([normalizers.BertNormalizer(lowercase=False, strip_accents=False),
                                           *([chosen] if chosen else [])])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = SPECIALS + [UNK["wordpiece"]]
    vocab = _budget(cfg, len(specials))
    tok.train_from_iterator(texts(), trainers.WordPieceTrainer(vocab_size=vocab + len(specials), special_tokens=specials,
                                                               min_frequency=cfg.min_frequency, show_progress=False))
    return tok


def _unigram(texts: Texts, cfg: TokenizerSpec) -> Tokenizer:
    tok = Tokenizer(models.Unigram())
    _metaspace(tok, cfg.byte_fallback)
    specials = SPECIALS + [UNK["unigram"]]
    vocab = _budget(cfg, len(specials) + (256 if cfg.byte_fallback else 0))
    tok.train_from_iterator(texts(), trainers.UnigramTrainer(vocab_size=vocab + len(specials), special_tokens=specials,
                                                             unk_token=UNK["unigram"], show_progress=False))
    pieces = [(p, s) for p, s in json.loads(tok.to_str())["model"]["vocab"]]
    return _unigram_without_specials(tok, pieces, UNK["unigram"], cfg.byte_fallback)


def _sentencepiece(texts: Texts, cfg: TokenizerSpec, normalizer: normalizers.Normalizer | None) -> Tokenizer:
    """Train with the sentencepiece library (unigram), then carry its pieces and scores into tokenizer.json."""
    import sentencepiece as spm

    specials = SPECIALS
    _budget(cfg, len(specials) + 1 + (256 if cfg.byte_fallback else 0))

    def sentences() -> Iterator[str]:  # the library sees the text already normalised, as tokenizers will
        for text in texts():
            yield normalizer.normalize_str(text) if normalizer is not None else text

    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences(), model_writer=model, vocab_size=cfg.vocab_size - len(cfg.special_tokens),
            model_type="unigram", byte_fallback=cfg.byte_fallback, normalization_rule_name="identity",
            add_dummy_prefix=False, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
            hard_vocab_limit=False, unk_id=len(specials), bos_id=-1, eos_id=-1, pad_id=-1,
            control_symbols=specials, character_coverage=1.0, minloglevel=2)
    except RuntimeError as e:
        raise TailorError(f"tokenizer (sentencepiece): {str(e).split('] ')[-1]}") from None
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram())
    _metaspace(tok, cfg.byte_fallback)
    return _unigram_without_specials(tok, pieces, sp.id_to_piece(sp.unk_id()), cfg.byte_fallback)


def _add_byte_fallback(tok: Tokenizer) -> Tokenizer:
    """Add the 256 byte tokens <0xNN> to a trained BPE model and switch byte fallback on."""
    data = json.loads(tok.to_str())
    model = data["model"]
    for piece in BYTE_TOKENS:
        model["vocab"].setdefault(piece, len(model["vocab"]))
    model["byte_fallback"] = True
    return Tokenizer.from_str(json.dumps(data))


def _unigram_without_specials(tok: Tokenizer, pieces: list[tuple[str, float]], unk: str,
                              byte_fallback: bool) -> Tokenizer:
    """Rebuild a unigram model from `pieces` with the special tokens outside it, as added tokens.

    A unigram model picks any piece in its vocabulary, so a special token left inside it would
    match plain text that spells it ('<|sep|>' typed by a user would become the separator).
    """
    pieces = [(p, s) for p, s in pieces if p not in SPECIALS]
    if byte_fallback:
        have = {p for p, _ in pieces}
        pieces += [(b, 0.0) for b in BYTE_TOKENS if b not in have]
    out = Tokenizer(models.Unigram(pieces, unk_id=[p for p, _ in pieces].index(unk), byte_fallback=byte_fallback))
    out.normalizer, out.pre_tokenizer, out.decoder = tok.normalizer, tok.pre_tokenizer, tok.decoder
    out.add_special_tokens(SPECIALS)
    return out


def train_tokenizer(texts: Texts, cfg: TokenizerSpec) -> Tokenizer:
    """A trained tokenizer of cfg.type with the special tokens EOS, PAD, SEP (and cfg.special_tokens)."""
    normalizer = make_normalizer(cfg)
    if cfg.type == "bpe":
        _budget(cfg, len(SPECIALS) + 256)
        tok = train_bpe(texts(), cfg.vocab_size - len(cfg.special_tokens), cfg.min_frequency, normalizer)
    elif cfg.type == "sentencepiece":
        tok = _sentencepiece(texts, cfg, normalizer)
    else:
        tok = {"char_bpe": _char_bpe, "wordpiece": _wordpiece, "unigram": _unigram}[cfg.type](texts, cfg)
    if normalizer is not None and cfg.type not in ("bpe", "wordpiece"):
        tok.normalizer = normalizer
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in cfg.special_tokens])
    return tok
