"""The report stage: one self-contained report.html (plots inlined) with the targets' verdict."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from tailor.artifacts import atomic_write_json, atomic_write_text
from tailor.spec import Spec, dump_spec

CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f4f4f4}.met{color:#0a7d28;font-weight:bold}.unmet{color:#b00020;font-weight:bold}
pre{background:#f7f7f7;padding:1rem;overflow:auto;font-size:.85rem}img{max-width:100%}"""


def judge_targets(spec: Spec, metrics: dict[str, float]) -> list[dict]:
    """Each target with the measured value and whether it is met (a missing value is not met)."""
    return [{"target": t.describe(), "metric": t.key, "value": metrics.get(t.key), "met": t.met(metrics.get(t.key))}
            for t in spec.problem.targets]


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def loss_plot(rows: list[dict]) -> bytes | None:
    """PNG of train and validation loss against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    for split, style in (("train", "-"), ("validation", "o-")):
        pts = [(r["step"], r["loss"]) for r in rows if r["split"] == split]
        if pts:
            ax.plot(*zip(*pts), style, label=split, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _cell(value) -> str:
    """A table cell; a (value, css_class) pair gets the class."""
    if isinstance(value, tuple):
        return f"<td class='{value[1]}'>{_fmt(value[0])}</td>"
    return f"<td>{_fmt(value)}</td>"


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def run_report(spec: Spec, run_dir: Path, out_dir: Path) -> dict:
    """Write report.html, plots/ and targets.json into out_dir; publish report.html and metrics.json at the run root."""
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    targets = judge_targets(spec, metrics)
    data = json.loads((run_dir / "data" / "report.json").read_text())
    train = json.loads((run_dir / "train" / "summary.json").read_text())
    model = json.loads((run_dir / "model" / "report.json").read_text())
    tok = json.loads((run_dir / "tokenizer" / "report.json").read_text())
    parts = [f"<h1>{html.escape(spec.name)}</h1>",
             f"<p><b>Domain:</b> {html.escape(spec.problem.domain)}<br><b>Task:</b> {html.escape(spec.problem.task)}"
             f"<br><b>Output:</b> {spec.problem.output}<br><b>Run:</b> {html.escape(run_dir.name)}</p>"]
    met = sum(t["met"] for t in targets)
    parts.append(f"<h2>Targets: {met} of {len(targets)} met</h2>")
    if targets:
        parts.append(_table(["target", "measured", "verdict"],
                            [[t["target"], "not measured" if t["value"] is None else t["value"],
                              ("met", "met") if t["met"] else ("not met", "unmet")] for t in targets]))
    parts.append("<h2>Metrics</h2>" + _table(["metric", "value"], [[k, v] for k, v in sorted(metrics.items())]))
    png = loss_plot(read_jsonl(run_dir / "train" / "metrics.jsonl"))
    if png:
        (out_dir / "plots").mkdir(exist_ok=True)
        (out_dir / "plots" / "loss.png").write_bytes(png)
        parts.append(f"<h2>Training</h2><img alt='loss curves' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    parts.append(_table(["steps", "seconds", "tokens/s", "stopped by", "device", "parameters"],
                        [[train["steps"], train["seconds"], train["tokens_per_s"], train["stopped_by"], train["device"],
                          model["parameters"]]]))
    parts.append("<h2>Data</h2><p>" + f"loaded {data['loaded']}, kept {data['kept']}, dropped {data['dropped']}; "
                 + ", ".join(f"{k} {v}" for k, v in data["splits"].items()) + "</p>")
    parts.append(_table(["step", "in", "kept", "modified", "dropped"],
                        [[s["step"], s["in"], s["kept"], s["modified"],
                          ", ".join(f"{r}: {n}" for r, n in s["dropped"].items()) or "0"] for s in data["steps"]]))
    parts.append(f"<p>Tokenizer: {tok['type']}, vocabulary {tok['vocab_size']}, {tok['bytes_per_token']} bytes per token. "
                 f"Context: {model['block_size']} tokens.</p>")
    for split in ("test", "validation"):
        preds = read_jsonl(run_dir / "evaluate" / f"predictions-{split}.jsonl")
        if preds:
            wrong = [p for p in preds if not p["correct"]]
            shown = wrong[:15] + [p for p in preds if p["correct"]][: max(0, 5 - len(wrong))]
            parts.append(f"<h2>Answers on {split}: {len(preds) - len(wrong)} of {len(preds)} exact</h2>")
            parts.append(_table(["input", "expected", "predicted", "correct"],
                                [[p["input"], p["expected"], p["predicted"], "yes" if p["correct"] else "no"] for p in shown]))
            break
    parts.append(f"<h2>Spec (resolved)</h2><pre>{html.escape(dump_spec(spec))}</pre>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(spec.name)} report</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    atomic_write_text(out_dir / "report.html", page)
    atomic_write_json(out_dir / "targets.json", targets)
    atomic_write_text(run_dir / "report.html", page)
    atomic_write_json(run_dir / "metrics.json", metrics)
    return {"targets_met": met, "targets": len(targets)}
