"""The report stage: one self-contained report.html (plots inlined) with the targets' verdict,
the metrics with intervals, the error analysis and, when `tailor ablate` has run, the ablation."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tailor.artifacts import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file
from tailor.data.report import data_section as data_quality_section
from tailor.page import document, esc, img, png, pyplot, table
from tailor.evaluate.predictions import by_split, read_predictions
from tailor.evaluate.sections import (ablation_plot, ablation_section, answers_section, errors_section,
                                      metrics_section, targets_section)
from tailor.spec import Spec, dump_spec, spec_hash
from tailor.spec.problem import Target
from tailor.stage import Stage


def judge_targets(targets: list[Target], metrics: dict[str, float],
                  intervals: dict[str, list[float]] | None = None) -> list[dict]:
    """Each target with the measured value, its interval and whether it is met (a missing value is not met).

    certainty says whether the whole interval lies on the same side of the bound as the value.
    """
    out = []
    for t in targets:
        value, bounds = metrics.get(t.key), (intervals or {}).get(t.key)
        certainty = "no interval"
        if value is not None and bounds and all(math.isfinite(b) for b in bounds):
            certainty = "whole interval agrees" if t.met(bounds[0]) == t.met(bounds[1]) == t.met(value) \
                else "interval crosses the bound"
        out.append({"target": t.describe(), "metric": t.key, "value": value, "interval": bounds,
                    "met": t.met(value), "certainty": certainty})
    return out


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def loss_plot(rows: list[dict]) -> bytes | None:
    """PNG of train and validation loss against step."""
    if not rows:
        return None
    plt = pyplot()
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
    return png(fig)


def preference_part(preference: dict | None) -> str:
    """The preference objective of the run and its held-out rewards at the first and last validation passes."""
    if not preference:
        return ""
    rows = [[r["step"], _num(r["loss"]), _num(r["reward_accuracy"]), _num(r["reward_margin"]),
             _num(r["reward_chosen"]), _num(r["reward_rejected"]), r["pairs"]] for r in preference.get("validation", [])]
    return (f"<h3>Preference tuning</h3><p>Objective {preference['objective']} (beta {preference['beta']:g}); "
            f"reference: {preference['reference']}. Reward accuracy is the share of held-out pairs whose "
            "preferred answer has the higher reward; the margin is the mean preferred minus rejected reward.</p>"
            + table(["step", "validation loss", "reward accuracy", "reward margin", "chosen reward",
                     "rejected reward", "pairs"], rows))


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def training_section(train_dir: Path, model_dir: Path, project: Path, out_dir: Path) -> str:
    train = json.loads((train_dir / "summary.json").read_text())
    model = json.loads((model_dir / "report.json").read_text())
    out = "<h2>Training</h2>"
    data = loss_plot(read_jsonl(train_dir / "metrics.jsonl"))
    if data:
        atomic_write_bytes(out_dir / "plots" / "loss.png", data)
        out += img(data, "loss curves")
    for curve in sorted((train_dir / "plots").glob("*.png")):  # every other curve the training logged
        if curve.stem != "loss":
            out += img(curve.read_bytes(), f"{curve.stem} curve")
    tuning = tuning_report(project)
    if tuning.is_file():  # the study `tailor tune` ran for this spec: its trials table and plot
        body = tuning.read_text(encoding="utf-8")
        out += "<h3>Tuning</h3>" + body[body.index("<p>"):body.rindex("</body>")]
    out += preference_part(train.get("preference"))
    # a summary written before padding was measured has no padding_fraction: shown as unknown
    padding = train.get("padding_fraction")
    return out + table(["steps", "seconds", "tokens/s (real)", "padding", "stopped by", "device", "parameters"],
                       [[train["steps"], train["seconds"], train["tokens_per_s"],
                         f"{padding:.1%}" if padding is not None else "unknown", train["stopped_by"], train["device"],
                         model["parameters"]]])


def data_section(data_dir: Path, tokenizer_dir: Path, model_dir: Path) -> str:
    """The data stage's section (tailor.data.report), then the tokenizer and context the later stages chose."""
    tok = json.loads((tokenizer_dir / "report.json").read_text())
    model = json.loads((model_dir / "report.json").read_text())
    return data_quality_section(data_dir) + (
        f"<p>Tokenizer: {tok['type']}, vocabulary {tok['vocab_size']}, {tok['bytes_per_token']} bytes per "
        f"token. Context: {model['block_size']} tokens.</p>")


def results_path(project: Path, spec: Spec) -> Path:
    """Where `tailor ablate` writes the ablation results of exactly this spec."""
    return Path(project) / "ablations" / f"ablation-{spec_hash(spec)}.json"


def tuning_report(project: Path) -> Path:
    """The report `tailor tune` writes for this spec's runs."""
    return project / "tune" / "report.html"


def refine_section(project: Path) -> Path:
    """The account of `tailor refine` on this spec's runs (its rounds, without the page around them)."""
    return project / "refine" / "section.html"


def ablation_part(spec: Spec, project: Path, out_dir: Path) -> str:
    """The ablation section when `tailor ablate` has results for exactly this spec."""
    path = results_path(project, spec)
    if not spec.evaluate.ablation.variants:
        return ""
    if not path.is_file():
        return "<h2>Ablation</h2><p>Not run yet: <code>tailor ablate</code> on this spec adds it here.</p>"
    result = json.loads(path.read_text())
    plot = ablation_plot(result)
    if plot:
        atomic_write_bytes(out_dir / "plots" / "ablation.png", plot)
    return ablation_section(result, plot)


def run_report(out: Path, *, spec: Spec, project: Path, data_dir: Path, tokenizer_dir: Path, model_dir: Path,
               train_dir: Path, evaluate_dir: Path, progress=None) -> dict:
    """Write report.html, plots/, targets.json and metrics.json into `out` (the runner publishes report.html and
    metrics.json at the run root). It shows the whole resolved spec, so it reads all of it."""
    out_dir, ev = Path(out), evaluate_dir
    results = json.loads((ev / "results.json").read_text())
    metrics = results["metrics"]
    targets = judge_targets(spec.problem.targets, metrics, results["intervals"])
    errors = json.loads((ev / "errors.json").read_text())
    groups = by_split(read_predictions(ev))
    sample_split = errors.get("split") or next(iter(groups), None)
    parts = [f"<h1>{esc(spec.name)}</h1>",
             f"<p><b>Domain:</b> {esc(spec.problem.domain)}<br><b>Task:</b> {esc(spec.problem.task)}"
             f"<br><b>Output:</b> {spec.problem.output}<br><b>Run:</b> {esc(ev.parent.name)}</p>",
             targets_section(targets), metrics_section(results),
             training_section(train_dir, model_dir, project, out_dir), data_section(data_dir, tokenizer_dir, model_dir),
             answers_section(groups.get(sample_split, []), sample_split) if sample_split else "",
             errors_section(errors), ablation_part(spec, project, out_dir),
             refine_section(project).read_text(encoding="utf-8") if refine_section(project).is_file() else "",
             f"<h2>Spec (resolved)</h2><pre>{esc(dump_spec(spec))}</pre>"]
    page = document(f"{spec.name} report", parts)
    atomic_write_text(out_dir / "report.html", page)
    atomic_write_json(out_dir / "targets.json", targets)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return {"targets_met": sum(t["met"] for t in targets), "targets": len(targets)}


def report_files(project: Path, spec: Spec) -> dict[str, str | None]:
    """What the report reads beside the runs: this spec's ablation results, the tuning and refine reports."""
    return {str(p): sha256_file(p) if p.is_file() else None
            for p in (results_path(project, spec), tuning_report(project), refine_section(project))}


STAGE = Stage("report", run=run_report, upstream=("data", "tokenizer", "model", "train", "evaluate"),
              reads={"spec": ""}, files=report_files, project=True, publish=("report.html", "metrics.json"))
