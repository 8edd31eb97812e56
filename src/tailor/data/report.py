"""The data section of report.html: what was read, what each step did, splits, labels, lengths,
duplicates and leakage, and samples of dropped records per reason."""

from __future__ import annotations

import html
import json
from pathlib import Path

from tailor.artifacts import RESERVED_PREFIX, SOURCE_COLUMN


def _esc(value) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _reasons(d: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in d.items()) or "0"


def _histogram_svg(split: str, h: dict) -> str:
    """Bars of record counts per length bin, labelled with the bin's upper edge."""
    counts, edges = h["counts"], h["edges"]
    top = max(counts) or 1
    step, bar = 17, 15
    width, height = step * len(counts) + 30, 130
    bars = "".join(
        f"<rect x='{15 + step * i}' y='{100 - 90 * c / top:.1f}' width='{bar}' height='{90 * c / top:.1f}' fill='#4a7'>"
        f"<title>{edges[i]}–{edges[i + 1]}: {c}</title></rect>" for i, c in enumerate(counts))
    ticks = "".join(f"<text x='{15 + step * i - 1}' y='{112 + 9 * (i % 2)}' font-size='8' text-anchor='middle'>{e}</text>"
                    for i, e in enumerate(edges))
    return (f"<figure style='margin:0'><svg width='{width}' height='{height}' role='img' aria-label='lengths of "
            f"{split}'>{bars}{ticks}</svg>"
            f"<figcaption>{split}: {h['count']} records, median {h['median']:g}, p95 {h['p95']:g}, "
            f"max {h['max']}</figcaption></figure>")


def data_section(data_dir: Path) -> str:
    """HTML for the data stage of one run, from its report.json."""
    r = json.loads((Path(data_dir) / "report.json").read_text())
    parts = ["<h2>Data</h2>",
             f"<p>loaded {r['loaded']}, generated {r.get('generated', 0)}, kept {r['kept']}, dropped {r['dropped']}"
             f" (loaded + generated = kept + dropped); rejected as malformed {r.get('rejected', 0)}; "
             + ", ".join(f"{k} {v}" for k, v in r["splits"].items()) + "</p>"]
    parts += [f"<p class='unmet'><b>Warning:</b> {_esc(w)}</p>" for w in r.get("warnings", [])]
    if r.get("sources"):
        parts.append(_table(["source", "type", "from", "records", "kept", "rejected", "skipped"],
                            [[s["source"], s["type"], s["path"], s["records"], s.get("kept", ""), s["rejected"],
                              _reasons(s["skipped"])] for s in r["sources"]]))
    parts.append("<h3>Cleaning steps</h3>")
    parts.append(_table(["step", "in", "kept", "modified", "dropped", "counts"],
                        [[s["step"], s["in"], s["kept"], s["modified"], _reasons(s["dropped"]), _reasons(s.get("counts", {}))]
                         for s in r["steps"]]))
    dup = r.get("duplicates") or {}
    if dup:
        leak = dup.get("cross_split_pairs")
        parts.append("<h3>Duplicates and leakage</h3><p>"
                     f"exact duplicates dropped {dup.get('exact', 0)}, near duplicates dropped {dup.get('near', 0)}; "
                     f"near-duplicate pairs among kept records {dup.get('near_duplicate_pairs')}, of which across "
                     f"splits: <b>{leak}</b>" + (f"; grouped by {dup['grouped_by']} into {dup['groups']} groups"
                                                 if dup.get("grouped_by") else "") + "</p>")
    labels = r.get("labels")
    if labels:
        names = sorted({k for d in labels["splits"].values() for k in d})
        parts.append(f"<h3>Labels ({_esc(labels['field'])})</h3>")
        parts.append(_table(["label", *labels["splits"]], [[n, *(d.get(n, 0) for d in labels["splits"].values())]
                                                           for n in names]))
    lengths = r.get("lengths") or {}
    if any(isinstance(v, dict) and v for v in lengths.values()):
        parts.append(f"<h3>Lengths ({_esc(lengths.get('unit', ''))})</h3><div style='display:flex;flex-wrap:wrap;gap:1rem'>")
        parts += [_histogram_svg(split, h) for split, h in lengths.items() if isinstance(h, dict) and h]
        parts.append("</div>")
    samples = [(s["step"], reason, shown) for s in r["steps"] for reason, shown in s.get("samples", {}).items()]
    if samples:
        parts.append("<h3>Dropped records (samples per reason)</h3>")
        for step, reason, shown in samples:
            items = "".join(f"<li><code>{_esc(x.get(SOURCE_COLUMN, ''))}</code> "
                            f"{_esc({k: v for k, v in x.items() if not k.startswith(RESERVED_PREFIX)})}</li>"
                            for x in shown)
            parts.append(f"<details><summary>{_esc(step)}: {_esc(reason)} ({len(shown)} shown)</summary><ul>{items}</ul></details>")
    return "".join(parts)
