"""Metric formulas, each computed from per-example statistics so that any metric can be resampled.

Language modelling follows lm-evaluation-harness: perplexities and bits-per-byte are the summed
negative log-likelihood divided by a count (tokens, words, UTF-8 bytes), words being
`len(re.split(r"\\s+", text))` of the scored text. Generation metrics come from the reference
implementations: sacrebleu (BLEU, chrF; sufficient statistics summed over examples, as sacrebleu's
own significance tests do), rouge-score (ROUGE-1/2/L/Lsum F-measure, averaged over examples), and
the SQuAD v1.1 script's answer normalisation for exact match and token F1.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from tailor.spec.metrics import TABLE
from tailor.spec.metrics import Metric as MetricDef

References = Sequence[str | Sequence[str]]  # one reference, or several, per example


def _ref_lists(references: References) -> list[list[str]]:
    return [[r] if isinstance(r, str) else list(r) for r in references]


# ---- language modelling -------------------------------------------------------------------------

def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(mean negative log-likelihood per token), natural log."""
    return math.exp(nll_sum / n_tokens)


def word_perplexity(nll_sum: float, n_words: int) -> float:
    """exp(summed NLL / number of words), lm-evaluation-harness's word_perplexity."""
    return math.exp(nll_sum / n_words)


def byte_perplexity(nll_sum: float, n_bytes: int) -> float:
    """exp(summed NLL / number of UTF-8 bytes), lm-evaluation-harness's byte_perplexity."""
    return math.exp(nll_sum / n_bytes)


def bits_per_byte(nll_sum: float, n_bytes: int) -> float:
    """Summed NLL in nats over the scored text, in bits, divided by its UTF-8 byte count."""
    return nll_sum / math.log(2) / n_bytes


def count_words(text: str) -> int:
    """Words as lm-evaluation-harness counts them: pieces of the text split on whitespace runs."""
    return len(re.split(r"\s+", text))


# ---- exact match and token F1 (SQuAD v1.1) ------------------------------------------------------

def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference after trimming surrounding whitespace."""
    if not references:
        return float("nan")
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(references)


def squad_normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def normalized_exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference (the best one)."""
    refs = [references] if isinstance(references, str) else references
    return float(max(squad_normalize(prediction) == squad_normalize(r) for r in refs))


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """SQuAD token F1 of normalised words against the best-matching reference."""
    refs = [references] if isinstance(references, str) else references
    return max(_f1(squad_normalize(prediction).split(), squad_normalize(r).split()) for r in refs)


def _f1(pred: list[str], ref: list[str]) -> float:
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


# ---- BLEU, chrF (sacrebleu) and ROUGE (rouge-score) ---------------------------------------------

@cache
def _metric(kind: str, options: tuple = ()):
    """One sacrebleu metric object per (kind, options): building it parses options and loads a tokenizer."""
    import sacrebleu

    return (sacrebleu.BLEU if kind == "bleu" else sacrebleu.CHRF)(**dict(options))


def sacre_stats(kind: str, predictions: list[str], references: References, **options) -> np.ndarray:
    """Per-example sufficient statistics (n, k) of sacrebleu's BLEU or chrF."""
    refs = _ref_lists(references)
    width = {len(r) for r in refs}
    if len(width) > 1:
        raise ValueError("every example needs the same number of references")
    streams = [list(s) for s in zip(*refs)]
    metric = _metric(kind, tuple(sorted(options.items())))
    return np.asarray(metric._extract_corpus_statistics(predictions, streams), dtype=np.float64)


def sacre_score(kind: str, stats: np.ndarray, **options) -> float:
    """Corpus score (0-100) from summed sufficient statistics."""
    metric = _metric(kind, tuple(sorted(options.items())))
    return float(metric._compute_score_from_stats(stats.sum(0).tolist()).score)


def bleu(predictions: list[str], references: References, **options) -> float:
    """Corpus BLEU (0-100), sacrebleu's defaults unless options say otherwise."""
    return sacre_score("bleu", sacre_stats("bleu", predictions, references, **options), **options)


def chrf(predictions: list[str], references: References, **options) -> float:
    """Corpus chrF (0-100), sacrebleu's defaults unless options say otherwise."""
    return sacre_score("chrf", sacre_stats("chrf", predictions, references, **options), **options)


ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@cache
def _rouge_scorer(use_stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)


def rouge_scores(prediction: str, reference: str, use_stemmer: bool = False) -> dict:
    """rouge-score's Score(precision, recall, fmeasure) per ROUGE type for one example."""
    return _rouge_scorer(use_stemmer).score(reference, prediction)


def rouge(predictions: list[str], references: list[str], use_stemmer: bool = False) -> dict[str, float]:
    """Mean F-measure per ROUGE type over the examples."""
    rows = [rouge_scores(p, r, use_stemmer) for p, r in zip(predictions, references)]
    return {t: float(np.mean([row[t].fmeasure for row in rows])) for t in ROUGE_TYPES}


# ---- per-example statistics and the metrics they make -------------------------------------------

def generation_columns(predictions: list[str], references: list[str]) -> dict[str, list]:
    """The per-example columns every generation metric is aggregated from."""
    r = [rouge_scores(p, ref) for p, ref in zip(predictions, references)]
    return {"exact": [float(p.strip() == ref.strip()) for p, ref in zip(predictions, references)],
            "normalized_exact": [normalized_exact_match(p, ref) for p, ref in zip(predictions, references)],
            "f1": [token_f1(p, ref) for p, ref in zip(predictions, references)],
            **{t: [row[t].fmeasure for row in r] for t in ROUGE_TYPES},
            "bleu_stats": sacre_stats("bleu", predictions, references).tolist(),
            "chrf_stats": sacre_stats("chrf", predictions, references).tolist()}


Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Metric:
    """A metric as an aggregate of per-example columns: resampling rows gives its bootstrap."""

    name: str
    columns: tuple[str, ...]
    aggregate: Callable[[Columns], float]
    generated: bool = False


def _ratio(num: str, den: str, f: Callable[[float], float] = lambda x: x) -> Callable[[Columns], float]:
    return lambda c: f(c[num].sum() / c[den].sum()) if c[den].sum() > 0 else float("nan")


def _mean(col: str) -> Callable[[Columns], float]:
    return lambda c: float(c[col].mean()) if len(c[col]) else float("nan")


def _sacre(kind: str) -> Callable[[Columns], float]:
    return lambda c: sacre_score(kind, c[f"{kind}_stats"]) if len(c[f"{kind}_stats"]) else float("nan")


def _pct(q: float) -> Callable[[Columns], float]:
    return lambda c: float(np.percentile(c["latency_ms"], q)) if len(c["latency_ms"]) else float("nan")


Aggregate = Callable[[Columns], float]
Factory = Callable[[MetricDef], Aggregate]  # the formula of a table entry


def registry(aggregates: dict[str, Factory]) -> dict[str, Metric]:
    """The table's metrics whose aggregate is one of `aggregates`, as computable Metrics (tailor.spec.metrics)."""
    return {name: Metric(name, d.columns, aggregates[d.aggregate](d), d.generated)
            for name, d in TABLE.items() if d.aggregate in aggregates}


LM_AGGREGATES: dict[str, Factory] = {
    "ratio": lambda d: _ratio(*d.columns),
    "exp_ratio": lambda d: _ratio(*d.columns, math.exp),
    "bits_ratio": lambda d: _ratio(*d.columns, lambda x: x / math.log(2)),
    "mean": lambda d: _mean(d.columns[0]),
    "sacrebleu": lambda d: _sacre(d.name),
    "percentile": lambda d: _pct(float(d.name[1:3])),  # p50_latency_ms, p95_latency_ms
}
REGISTRY: dict[str, Metric] = registry(LM_AGGREGATES)


def metric_columns(rows: list[dict], metric: Metric) -> Columns:
    """The metric's columns as arrays, from the rows that have them (generated ones only, if it needs them)."""
    kept = [r for r in rows if all(r.get(c) is not None for c in metric.columns)]
    return {c: np.asarray([r[c] for r in kept], dtype=np.float64) for c in metric.columns}
