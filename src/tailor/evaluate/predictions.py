"""`evaluate/predictions.parquet`: one row per example, and the metrics (with intervals) made from it."""

from __future__ import annotations

import math
from pathlib import Path

from tailor.errors import TailorError
from tailor.evaluate.bootstrap import interval
from tailor.evaluate.classification import LABEL_REGISTRY
from tailor.evaluate.metrics import REGISTRY, Metric, metric_columns
from tailor.evaluate.regression import SCORE_REGISTRY
from tailor.spec.evaluate import Bootstrap

FILE = "predictions.parquet"
# Every metric a prediction row can give: text rows carry NLL and answer columns, label rows label codes,
# score rows the true and predicted numbers.
METRICS: dict[str, Metric] = REGISTRY | LABEL_REGISTRY | SCORE_REGISTRY


def write_predictions(path: Path, rows: list[dict]) -> None:
    """Every row as one Parquet table (columns are the union of the rows' keys)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = list(dict.fromkeys(k for r in rows for k in r))
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), path)


def read_predictions(run_dir: Path) -> list[dict]:
    """The prediction rows of a finished run (or of its evaluate folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tailor import encryption

    run_dir = Path(run_dir)
    for path in (run_dir / "evaluate" / FILE, run_dir / FILE):
        if encryption.exists(path):  # .enc: decrypted in memory
            return pq.read_table(pa.BufferReader(encryption.read_bytes(path))).to_pylist()
    raise TailorError(f"{run_dir}: no evaluate/{FILE}; run `tailor run` on its spec first")


def by_split(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["split"], []).append(r)
    return out


def summarize(rows: list[dict], names: list[str], boot: Bootstrap) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Flat metrics ('test/bleu') and their bootstrap intervals, per split, for the named metrics."""
    metrics: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    for split, split_rows in by_split(rows).items():
        if any(r.get("tokens") is not None for r in split_rows):
            metrics[f"{split}/tokens"] = float(sum(r.get("tokens") or 0 for r in split_rows))
        generated = [r for r in split_rows if r.get("predicted") is not None]
        if generated:
            metrics[f"{split}/examples"] = float(len(generated))
        for name in names:
            metric = METRICS[name]
            columns = metric_columns(split_rows, metric)
            if not len(next(iter(columns.values()))):
                continue  # e.g. generation metrics of a split that was not answered
            value = metric.aggregate(columns)
            metrics[f"{split}/{name}"] = value
            low, high = interval(metric, columns, boot.samples, boot.confidence, boot.seed)
            if math.isfinite(low):
                intervals[f"{split}/{name}"] = [low, high]
    return metrics, intervals
