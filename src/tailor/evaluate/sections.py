"""Sections of report.html: targets, metrics with intervals, error analysis, answers, ablation."""

from __future__ import annotations

from tailor.spec.metrics import improves
from tailor.page import esc, fmt_interval, img, png, pyplot, table

def targets_section(targets: list[dict]) -> str:
    met = sum(t["met"] for t in targets)
    out = f"<h2>Targets: {met} of {len(targets)} met</h2>"
    if targets:
        out += table(["target", "measured", "interval", "verdict", "interval vs bound"],
                     [[t["target"], "not measured" if t["value"] is None else t["value"], fmt_interval(t["interval"]),
                       ("met", "met") if t["met"] else ("not met", "unmet"), t["certainty"]] for t in targets])
    return out


def metrics_section(results: dict) -> str:
    """One table per split: each metric with its bootstrap interval; the settings they were measured with."""
    metrics, intervals = results["metrics"], results["intervals"]
    boot = results["bootstrap"]
    out = (f"<h2>Metrics</h2><p class='dim'>Intervals: {boot['confidence']:.0%} percentile bootstrap over examples, "
           f"{boot['samples']} resamples (seed {boot['seed']}). BLEU and chrF are on sacrebleu's 0–100 scale; "
           "ROUGE is the mean F-measure; loss is nats per scored token.</p>")
    splits = list(dict.fromkeys(k.split("/")[0] for k in metrics))
    for split in splits:
        keys = [k for k in metrics if k.startswith(split + "/") and k.split("/")[1] not in ("tokens", "examples")]
        counts = ", ".join(f"{k.split('/')[1]} {int(metrics[k])}" for k in (f"{split}/examples", f"{split}/tokens")
                           if k in metrics)
        out += f"<h3>{esc(split)} <span class='dim'>({counts})</span></h3>"
        out += table(["metric", "value", "interval"], [[k.split("/")[1], metrics[k], fmt_interval(intervals.get(k))]
                                                       for k in keys])
    gen = results.get("generation")
    if gen:
        cap = results.get("max_examples")
        out += ("<p class='dim'>Generation: " + ", ".join(f"{k} {v}" for k, v in gen.items())
                + (f"; first {cap} examples per split" if cap else "; every example") + ".</p>")
    for split, timing in (results.get("latency") or {}).items():  # how the latency numbers were measured
        out += (f"<p class='dim'>Latency ({esc(split)}): {esc(timing['measured'])}; {timing['requests']} requests, "
                f"{timing['concurrency']} in flight at once, batches of up to {timing['max_batch']}, "
                f"{timing['warmup_requests']} warm-up requests not timed, {esc(timing['device'])}, "
                f"{timing['torch_threads']} torch thread(s).</p>")
    return out


def _bar_plot(labels: list[str], values: list[float], xlabel: str, title: str) -> bytes:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) + 1.2), dpi=100)
    ax.barh(range(len(labels)), values, color="#4c72b0")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return png(fig)


def _slice_table(items: list[dict], first: str) -> tuple[str, bytes | None]:
    keys = [k for k in ("examples", "exact_match", "token_f1", "loss", "bits_per_byte") if any(k in s for s in items)]
    html = table([first] + keys, [[s[first]] + [s.get(k) for k in keys] for s in items])
    metric = "exact_match" if "exact_match" in keys else "loss"
    shown = [s for s in items if metric in s][:25]
    plot = _bar_plot([str(s[first]) for s in shown], [s[metric] for s in shown], metric, "") if len(shown) > 1 else None
    return html, plot


def errors_section(errors: dict) -> str:
    """Worst examples, confused pairs, slices, length buckets and clusters of one split."""
    if not errors:
        return "<h2>Error analysis</h2><p>No split with records to analyse.</p>"
    out = (f"<h2>Error analysis: {esc(errors['split'])}</h2><p>{errors['examples']} examples, "
           f"{errors['generated']} answered; {errors['errors']} errors ({esc(errors['errors_are'])}).</p>")
    out += "<h3>Worst examples by loss</h3>"
    extra = [k for k in (errors["worst"][0] if errors["worst"] else {}) if k not in
             ("index", "input", "expected", "predicted", "correct", "loss", "tokens")]
    answered = errors["generated"] > 0
    heads = ["#", "input"] + (["expected", "predicted"] if answered else []) + ["loss", "tokens"] + extra
    out += table(heads, [[w["index"], w["input"]] + ([w["expected"], w["predicted"]] if answered else [])
                         + [w["loss"], w["tokens"]] + [w[k] for k in extra] for w in errors["worst"]])
    if answered:
        out += "<h3>Most confused pairs</h3>"
        out += (table(["expected", "predicted", "count"], [[c["expected"], c["predicted"], c["count"]]
                                                            for c in errors["confused"]])
                if errors["confused"] else "<p>No mistakes among the answered examples.</p>")
    for field, items in errors["slices"].items():
        html, plot = _slice_table(items, "value")
        out += f"<h3>By {esc(field)}</h3>" + (img(plot, f"metrics by {field}") if plot else "") + html
    if errors["length_buckets"]:
        html, plot = _slice_table(errors["length_buckets"], "bucket")
        out += "<h3>By input length</h3>" + (img(plot, "metrics by input length") if plot else "") + html
    clusters = errors["clusters"]
    out += "<h3>Clusters of errors (TF-IDF + k-means)</h3>"
    if "skipped" in clusters:
        out += f"<p>Not clustered: {esc(clusters['skipped'])}.</p>"
    else:
        for i, c in enumerate(clusters["clusters"], 1):
            out += f"<p><b>Cluster {i}</b>: {c['size']} errors; top terms: {esc(', '.join(c['terms']))}</p>"
            heads = ["input", "expected", "predicted", "loss"] if answered else ["input", "loss"]
            out += table(heads, [[e[k] for k in heads] for e in c["examples"]])
    return out


def answers_section(rows: list[dict], split: str) -> str:
    """A sample of answers: the mistakes first, then correct ones."""
    answered = [r for r in rows if r.get("predicted") is not None]
    if not answered:
        return ""
    wrong = [r for r in answered if not r["correct"]]
    shown = wrong[:15] + [r for r in answered if r["correct"]][: max(0, 5 - len(wrong))]
    return (f"<h2>Answers on {esc(split)}: {len(answered) - len(wrong)} of {len(answered)} exact</h2>"
            + table(["input", "expected", "predicted", "correct"],
                    [[r["input"], r["expected"], r["predicted"], "yes" if r["correct"] else "no"] for r in shown]))


def ablation_plot(result: dict) -> bytes | None:
    """Each variant's change against the baseline, with its interval, one panel per metric."""
    metrics = result["metrics"]
    variants = [v for v in result["variants"] if v["name"] != "baseline"]
    if not variants or not metrics:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.5 * len(variants) + 1.6), dpi=100,
                             squeeze=False)
    for ax, key in zip(axes[0], metrics):
        ds = [v["deltas"].get(key, {}) for v in variants]
        y = list(range(len(variants)))
        mid = [d.get("delta", float("nan")) for d in ds]
        err = [[max(0.0, m - d.get("low", m)) for m, d in zip(mid, ds)], [max(0.0, d.get("high", m) - m)
                                                                          for m, d in zip(mid, ds)]]
        ax.errorbar(mid, y, xerr=err, fmt="o", capsize=4)
        ax.axvline(0, color="#999", lw=1)
        ax.set_yticks(y, [v["name"] for v in variants])
        ax.invert_yaxis()
        ax.set_title(f"Δ {key}", fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    return png(fig)


def ablation_section(result: dict, plot: bytes | None) -> str:
    """The ablation table: each metric's change against the baseline, with intervals and significance."""
    conf = result["bootstrap"]["confidence"]
    out = (f"<h2>Ablation</h2><p>{len(result['variants'])} arms × {result['seeds']} seed(s), same budget. Δ is the "
           f"variant minus the baseline (mean over seeds) with its {conf:.0%} bootstrap interval (examples and "
           "seeds resampled; paired when both arms answered the same examples).</p>")
    if plot:
        out += img(plot, "ablation deltas")
    heads = ["variant", "overrides"]
    rows = []
    for key in result["metrics"]:
        heads += [key, f"Δ {key}", "interval", "p"]
    for v in result["variants"]:
        row = [v["name"], ", ".join(f"{k}={val}" for k, val in v["overrides"].items()) or "–"]
        for key in result["metrics"]:
            d = v["deltas"].get(key)
            value = v["values"].get(key)
            if v["name"] == "baseline" or d is None:
                row += [value, "–", "–", "–"]
                continue
            good = improves(key, d["delta"])
            mark = "met" if good else "unmet"
            sig = d["low"] > 0 or d["high"] < 0
            row += [value, (f"{d['delta']:+.4g}", mark if sig else "dim"), fmt_interval([d["low"], d["high"]]),
                    d["p_value"]]
        rows.append(row)
    return out + table(heads, rows)
