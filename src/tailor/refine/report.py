"""What `tailor refine` leaves in `<runs>/<name>/refine/`: report.html, refined.yaml, refined.diff, result.json.

report.html shows every round: the evidence, the change, its effect on validation with its
interval, kept or dropped and why; then the final spec's single test evaluation, and when a target
is still unmet, what the evidence suggests trying with more budget. section.html is the same
account without the page around it, which the spec's own report includes.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from tailor.artifacts import atomic_write_json, atomic_write_text
from tailor.page import document, esc, fmt_interval, table
from tailor.report import refine_section
from tailor.spec import Spec, dump_spec


def refined_diff(original: Spec, refined: Spec) -> str:
    """A unified diff of the two resolved specs (empty when nothing changed)."""
    return "".join(difflib.unified_diff(dump_spec(original).splitlines(keepends=True),
                                        dump_spec(refined).splitlines(keepends=True), "original", "refined"))


def _targets_table(rows: list[dict], met_key: str = "met") -> str:
    return table(["target", "measured", "interval", "verdict", "interval vs bound", "gap"],
                 [[t["target"], t["value"], fmt_interval(t["interval"]),
                   ("met", "met") if t[met_key] else ("not met", "unmet"), t["certainty"], t.get("gap")]
                  for t in rows])


def _verdict(trial: dict) -> tuple[str, str]:
    """(text, style) of a trial's verdict cell: kept, dropped, or a screening run (successive halving's first rung)."""
    if trial.get("screening"):
        return ("promoted", "met") if trial.get("promoted") else ("screened", "")
    return ("kept", "met") if trial["kept"] else ("dropped", "unmet")


def _effects(trial: dict) -> str:
    return "; ".join(f"{e['metric']} {e['delta']:+.4g} {fmt_interval(e['interval'])}" for e in trial["effects"]) or "–"


def suggestions(result: dict) -> list[str]:
    """What the last diagnosis suggests that was not tried or not affordable: levers and advice."""
    tried = {t["lever"] for t in result["trials"] if not t["why"].startswith(("skipped", "screening skipped"))}
    last = result["rounds"][-1]["proposals"] if result["rounds"] else []
    out = []
    for p in last:
        if p["lever"] in tried and p["changes"]:
            continue
        what = ", ".join(f"{k}: {v}" for k, v in (p["changes"] or {}).items()) or "needs your data or review"
        out.append(f"{p['lever']} ({p['why']}; suggested by {', '.join(p['findings'])}): {what}")
    return out


def section(result: dict, diff: str) -> str:
    """The refine account as HTML without the page: verdict, rounds, trials, the final test, the diff."""
    met, final = result["met"], result["final_run"]
    head = "not confirmed on test yet" if final is None else f"targets {'met' if met else 'not met'} on test"
    out = (f"<h2>Refinement: {head}</h2>"
           f"<p>{len(result['trials'])} trial(s) in {result['seconds']:.0f}s of a {result['budget_s']:.0f}s budget; "
           f"stopped: {esc(result['stopped'])}. Trials were judged on validation only; the final spec is "
           + (f"evaluated once on test (run {esc(Path(final).name)}).</p>" if final else "evaluated once on test "
              "by the run this report belongs to.</p>"))
    start = result["start"]
    if start["targets"]:
        out += f"<h3>Starting point: run {esc(Path(start['run']).name)}</h3>" + _targets_table(start["targets"])
    for rnd in result["rounds"]:
        out += f"<h3>Round {rnd['round']}</h3>"
        out += ("<p>Evidence:</p><ul>" + "".join(f"<li><b>{esc(f['rule'])}</b>: {esc(f['summary'])}</li>"
                                                  for f in rnd["findings"]) + "</ul>") if rnd["findings"] else \
            "<p>No rule found anything in this run.</p>"
        if rnd is result["rounds"][-1]:
            out += f"<p><b>Stopped here:</b> {esc(result['stopped'])}.</p>"
        trials = [t for t in result["trials"] if t["round"] == rnd["round"]]
        if trials:
            out += table(["trial", "evidence", "change", "effect on validation (Δ, interval)", "verdict", "why"],
                         [[t["label"], "; ".join(t["evidence"]), ", ".join(f"{k}: {v}" for k, v in t["changes"].items()),
                           _effects(t), _verdict(t), t["why"]]
                          for t in trials])
    out += "<h3>Final spec on validation</h3>" + _targets_table(result["validation"], "met_with_interval")
    if final is not None:
        out += "<h3>Final spec on test (evaluated once)</h3>" + _targets_table(result["test"])
    if final is not None and not met:
        tips = suggestions(result)
        out += "<h3>Not met: what the evidence suggests with more budget</h3>" + (
            "<ul>" + "".join(f"<li>{esc(s)}</li>" for s in tips) + "</ul>" if tips else
            "<p>No lever of the catalogue answers the evidence left; the data itself (more or better labelled "
            "examples) is the next place to look.</p>")
    return out + ("<h3>refined.yaml against the original</h3><pre>" + esc(diff) + "</pre>" if diff else
                  "<p>No change was kept: refined.yaml is the original spec.</p>")


def write_refine(result: dict, folder: Path) -> dict[str, Path]:
    """Write report.html, section.html, refined.yaml, refined.diff and result.json; their paths."""
    original, refined = result["original"], result["refined"]
    diff = refined_diff(original, refined)
    plain = {k: v for k, v in result.items() if k not in ("original", "refined")}
    paths = {name: Path(folder) / name for name in ("report.html", "refined.yaml", "refined.diff", "result.json")}
    paths["section.html"] = refine_section(Path(folder).parent)
    html = section(plain, diff)
    atomic_write_text(paths["section.html"], html)
    atomic_write_text(paths["report.html"], document(f"{original.name} refinement", [f"<h1>{esc(original.name)}</h1>",
                                                                                   html]))
    verdict = "not confirmed yet" if result["final_run"] is None else "met" if result["met"] else "not met"
    atomic_write_text(paths["refined.yaml"], f"# tailor refine of {original.name}: test targets {verdict}"
                      + (f"; run {result['final_run']}" if result["final_run"] else "") + "\n" + dump_spec(refined))
    atomic_write_text(paths["refined.diff"], diff)
    atomic_write_json(paths["result.json"], json.loads(json.dumps(plain, default=str)))
    return paths
