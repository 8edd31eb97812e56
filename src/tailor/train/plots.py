"""PNG plots of every curve a training run logged (metrics.jsonl), for the report."""

from __future__ import annotations

import math

from tailor.page import png, pyplot

SKIP = {"step", "split", "elapsed_s", "tokens"}  # bookkeeping, not curves


def curve_pngs(rows: list[dict]) -> dict[str, bytes]:
    """One PNG per logged metric name (train and validation on the same axes), keyed by the name."""
    plt = pyplot()
    names = sorted({k for r in rows for k, v in r.items() if k not in SKIP and isinstance(v, (int, float))})
    out = {}
    for name in names:
        fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
        for split, style in (("train", "-"), ("validation", "o-")):
            pts = [(r["step"], r[name]) for r in rows
                   if r.get("split") == split and isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
            if pts:
                ax.plot(*zip(*pts), style, label=split, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        if name in ("loss", "perplexity", "lr") and all(r.get(name, 1) > 0 for r in rows if name in r):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        out[name] = png(fig)
    return out
