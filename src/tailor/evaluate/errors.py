"""Error analysis of one split: worst examples by loss, most confused pairs, metrics sliced by
metadata and by input length, and the errors clustered (TF-IDF + k-means) with their top terms."""

from __future__ import annotations

import math

import numpy as np

from tailor.errors import TailorError
from tailor.evaluate.classification import confused_pairs
from tailor.evaluate.metrics import REGISTRY, metric_columns
from tailor.evaluate.scoring import META
from tailor.spec.evaluate import ErrorAnalysis

MAX_SLICE_VALUES = 50


def _is_error(row: dict) -> bool:
    return row.get("predicted") is not None and not row["correct"]


def slice_metrics(rows: list[dict]) -> dict[str, float]:
    """The numbers shown for a slice: its size and the metrics its rows can give."""
    generated = any(r.get("predicted") is not None for r in rows)
    names = ("exact_match", "token_f1", "loss") if generated else ("loss", "bits_per_byte")
    out: dict[str, float] = {"examples": float(len(rows))}
    for name in names:
        columns = metric_columns(rows, REGISTRY[name])
        if len(next(iter(columns.values()))):
            out[name] = REGISTRY[name].aggregate(columns)
    return out


def slice_fields(rows: list[dict], wanted: list[str] | None) -> list[str]:
    """Metadata fields to slice by: the wanted ones, or every field whose 2 to 50 values repeat across rows."""
    present = [k.removeprefix(META) for k in dict.fromkeys(k for r in rows for k in r) if k.startswith(META)]
    if wanted is not None:
        for name in wanted:
            if name not in present:
                raise TailorError(f"evaluate.error_analysis.slices: {name!r} is not a field of the records; "
                                  f"fields: {', '.join(present) or '(none besides the model fields)'}")
        return wanted
    fields = []
    for k in present:
        distinct = len({str(r.get(META + k)) for r in rows})
        if 2 <= distinct <= MAX_SLICE_VALUES and distinct < len(rows):  # values that group rows, not row ids
            fields.append(k)
    return fields


def slices(rows: list[dict], field: str) -> list[dict]:
    """Metrics per value of one metadata field, worst exact match (or highest loss) first."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(str(r.get(META + field)), []).append(r)
    out = [{"value": value, **slice_metrics(group)} for value, group in groups.items()]
    key = "exact_match" if any("exact_match" in s for s in out) else "loss"
    sign = 1 if key == "exact_match" else -1
    return sorted(out, key=lambda s: sign * s.get(key, math.inf))


def length_buckets(rows: list[dict], buckets: int) -> list[dict]:
    """Metrics per input-length bucket (quantiles of input tokens), shortest first."""
    lengths = np.asarray([r["input_tokens"] for r in rows])
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, buckets + 1)).round().astype(int))
    out = []
    for i in range(max(1, len(edges) - 1)):
        lo, hi = edges[i], edges[min(i + 1, len(edges) - 1)]
        last = i >= len(edges) - 2
        members = [r for r in rows if lo <= r["input_tokens"] and (r["input_tokens"] <= hi if last else r["input_tokens"] < hi)]
        if members:
            out.append({"bucket": f"{lo}-{hi if last else hi - 1} tokens", **slice_metrics(members)})
    return out


def _error_text(row: dict) -> str:
    return row["input"] + (" " + row["expected"] if row.get("expected") else "")


def cluster_errors(errors: list[dict], k: int, per_cluster: int, seed: int = 0) -> dict:
    """k-means over TF-IDF vectors of the errors' text; each cluster's top terms and nearest examples."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    k = min(k, len(errors) // 2)
    if k < 2:
        return {"skipped": f"{len(errors)} error(s): too few to cluster"}
    texts = [_error_text(r) for r in errors]
    vectorizer = TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b\w[\w.]*\b", sublinear_tf=True,
                                 stop_words="english")  # scikit-learn's own list: terms that say what the errors share
    try:
        x = vectorizer.fit_transform(texts)
    except ValueError:  # no terms at all, e.g. every error is punctuation
        return {"skipped": "the errors have no words to cluster"}
    k = min(k, x.shape[0], len({t for t in texts}))
    if k < 2:
        return {"skipped": "the errors are all the same text"}
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
    terms = vectorizer.get_feature_names_out()
    distances = km.transform(x)
    clusters = []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        top = np.argsort(km.cluster_centers_[c])[::-1][:6]
        nearest = members[np.argsort(distances[members, c])][:per_cluster]
        clusters.append({"size": int(len(members)), "terms": [str(terms[t]) for t in top if km.cluster_centers_[c][t] > 0],
                         "examples": [{key: errors[i].get(key) for key in ("input", "expected", "predicted", "loss")}
                                      for i in nearest]})
    return {"k": k, "clusters": sorted(clusters, key=lambda c: -c["size"])}


def analyse(rows: list[dict], cfg: ErrorAnalysis) -> dict:
    """The error analysis of one split's prediction rows."""
    generated = [r for r in rows if r.get("predicted") is not None]
    scored = [r for r in rows if r.get("loss") is not None]
    worst = sorted(scored, key=lambda r: -r["loss"])[: cfg.worst]
    if generated:
        errors = [r for r in generated if _is_error(r)]
        what = "wrong answers"
    else:  # a corpus has no answers: its errors are the documents the model predicts worst
        errors = sorted(scored, key=lambda r: -r["loss"])[: max(1, len(scored) // 4)]
        what = "highest-loss quarter of the documents"
    fields = slice_fields(rows, cfg.slices)
    keep = ("index", "input", "expected", "predicted", "correct", "loss", "tokens")
    return {
        "split": rows[0]["split"] if rows else None, "examples": len(rows), "generated": len(generated),
        "errors": len(errors), "errors_are": what,
        "worst": [{k: r.get(k) for k in keep} | {f: r.get(META + f) for f in fields} for r in worst],
        "confused": confused_pairs([r["expected"] for r in generated], [r["predicted"] for r in generated]),
        "slices": {f: slices(rows, f) for f in fields},
        "length_buckets": length_buckets(rows, cfg.length_buckets) if rows else [],
        "clusters": cluster_errors(errors, cfg.clusters, cfg.examples_per_cluster) if cfg.clusters else {"skipped": "off"},
    }

