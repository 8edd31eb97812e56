"""The tokenizer report: how well a vocabulary fits held-out text."""

from __future__ import annotations

import heapq
from collections import Counter

from tokenizers import Tokenizer

from tailor.tokenizer.train import BYTE_TOKENS, UNK

MAX_SAMPLE_BYTES = 25_000  # ~6k tokens: stable rates, at a small cost next to training


def sample_texts(texts: list[str]) -> list[str]:
    """The first texts up to MAX_SAMPLE_BYTES of UTF-8."""
    out, size = [], 0
    for text in texts:
        if size >= MAX_SAMPLE_BYTES:
            break
        out.append(text)
        size += len(text.encode("utf-8"))
    return out


def fallback_ids(tok: Tokenizer, kind: str, ids: list[int]) -> set[int]:
    """Which of `ids` spell text byte by byte: <0xNN> tokens, or byte-level tokens that are no whole character."""
    if kind == "bpe":
        texts = tok.decode_batch([[i] for i in ids], skip_special_tokens=False)
        return {i for i, text in zip(ids, texts) if "\ufffd" in text}
    return {i for i in (tok.token_to_id(b) for b in BYTE_TOKENS) if i is not None} & set(ids)


def tokenizer_report(tok: Tokenizer, kind: str, texts: list[str], top: int = 20) -> dict:
    """Tokens per word and per byte, unknown and fallback rates, round trips, longest and most frequent tokens."""
    texts = sample_texts(texts)
    # only the ids are read: the fast batch encoder skips the offsets (older tokenizers lack it)
    encodings = getattr(tok, "encode_batch_fast", tok.encode_batch)(texts, add_special_tokens=False)
    counts: Counter[int] = Counter()
    for e in encodings:
        counts.update(e.ids)
    n_tokens = sum(counts.values())
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_words = sum(len(t.split()) for t in texts)
    unk_id = tok.token_to_id(UNK.get(kind, "")) if kind in UNK else None
    fallback = fallback_ids(tok, kind, list(counts))
    normalizer = tok.normalizer
    decoded = tok.decode_batch([e.ids for e in encodings], skip_special_tokens=True)
    same = sum(d == (normalizer.normalize_str(t) if normalizer else t) for d, t in zip(decoded, texts))
    reserved = {t.content for t in tok.get_added_tokens_decoder().values()} | set(UNK.values())
    vocab = {p: i for p, i in tok.get_vocab(with_added_tokens=False).items() if p not in reserved}
    # rank by the stored piece (a byte-level piece has one character per byte), then by its text
    candidates = heapq.nsmallest(top * 3, vocab, key=lambda piece: (-len(piece), piece))
    longest = sorted(candidates, key=lambda piece: (-len(tok.decode([vocab[piece]])), piece))[:top]
    return {
        "sample": {"texts": len(texts), "bytes": n_bytes, "words": n_words, "tokens": n_tokens},
        "tokens_per_word": round(n_tokens / max(n_words, 1), 4),
        "tokens_per_byte": round(n_tokens / max(n_bytes, 1), 4),
        "bytes_per_token": round(n_bytes / max(n_tokens, 1), 3),
        "unknown_rate": round(counts[unk_id] / max(n_tokens, 1), 6) if unk_id is not None else 0.0,
        "fallback_rate": round(sum(counts[i] for i in fallback) / max(n_tokens, 1), 6),
        "round_trip_rate": round(same / max(len(texts), 1), 6),
        "longest_tokens": [{"token": piece, "text": tok.decode([vocab[piece]])} for piece in longest],
        "most_frequent_tokens": [{"token": tok.id_to_token(i), "count": c, "share": round(c / max(n_tokens, 1), 5)}
                                 for i, c in counts.most_common(top)],
    }
