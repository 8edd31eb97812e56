"""`tailor compare RUN_A RUN_B`: both runs' metrics side by side, the differences, and whether
each difference is significant (paired bootstrap when both runs answered the same examples)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tailor.errors import TailorError
from tailor.evaluate.bootstrap import difference
from tailor.evaluate.metrics import metric_columns
from tailor.page import document, esc, fmt_interval, table
from tailor.evaluate.predictions import METRICS, read_predictions
from tailor.spec.metrics import improves
from tailor.spec.evaluate import Bootstrap


def _results(run_dir: Path) -> dict:
    path = Path(run_dir) / "evaluate" / "results.json"
    if not path.is_file():
        raise TailorError(f"{run_dir}: not a finished run (no evaluate/results.json)")
    return json.loads(path.read_text())


def _kept(rows: list[dict], split: str, name: str) -> list[dict]:
    cols = METRICS[name].columns
    return [r for r in rows if r["split"] == split and all(r.get(c) is not None for c in cols)]


def winner(key: str, delta: float) -> str:
    """'b' when b - a = delta is an improvement of the metric, else 'a'."""
    return "b" if improves(key, delta) else "a"


def compare_runs(run_a: Path, run_b: Path, boot: Bootstrap | None = None) -> list[dict]:
    """One row per metric both runs measured: a, b, b - a, its interval, p-value, significant, better."""
    boot = boot or Bootstrap()
    ma, mb = _results(run_a)["metrics"], _results(run_b)["metrics"]
    rows_a, rows_b = read_predictions(run_a), read_predictions(run_b)
    out = []
    for key in [k for k in ma if k in mb]:
        split, name = key.split("/", 1)
        if name not in METRICS:
            continue
        ka, kb = _kept(rows_a, split, name), _kept(rows_b, split, name)
        paired = [(r["input"], r["expected"]) for r in ka] == [(r["input"], r["expected"]) for r in kb]
        d = difference(METRICS[name], [metric_columns(ka, METRICS[name])], [metric_columns(kb, METRICS[name])],
                       paired, boot.samples, boot.confidence, boot.seed)
        significant = math.isfinite(d["low"]) and (d["low"] > 0 or d["high"] < 0)
        better = winner(key, d["delta"]) if significant else None
        out.append({"metric": key, "a": ma[key], "b": mb[key], "delta": d["delta"], "interval": [d["low"], d["high"]],
                    "p_value": d["p_value"], "significant": significant, "better": better, "paired": paired})
    if not out:
        raise TailorError(f"{run_a} and {run_b} share no metric to compare")
    return out


def compare_html(run_a: Path, run_b: Path, rows: list[dict], confidence: float) -> str:
    """The comparison as a self-contained page."""
    head = (f"<h1>Comparison</h1><p>a: {esc(run_a)}<br>b: {esc(run_b)}</p><p class='dim'>Δ is b − a with its "
            f"{confidence:.0%} bootstrap interval; significant when the interval excludes 0.</p>")
    body = table(["metric", "a", "b", "Δ (b − a)", "interval", "p", "significant", "better", "paired"],
                 [[r["metric"], r["a"], r["b"], f"{r['delta']:+.4g}", fmt_interval(r["interval"]), r["p_value"],
                   ("yes", "met") if r["significant"] else ("no", "dim"), r["better"] or "–",
                   "yes" if r["paired"] else "no"] for r in rows])
    return document("comparison", [head, body])
