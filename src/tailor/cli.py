"""The `tailor` command: a table of commands over the stage functions, nothing else."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tailor.errors import TailorError

app = typer.Typer(help="Build a custom language model from one spec file.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
spec_app = typer.Typer(help="Check and show specs.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")
out = Console()
err = Console(stderr=True)

RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="Folder that holds runs/<spec name>/<run id>/.")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")) -> None:
    """Build a custom language model from one spec file: data, tokenizer, model, training, evaluation, serving."""


@spec_app.command("check")
def spec_check(spec: Path = typer.Argument(..., help="Spec file (YAML).")) -> None:
    """Validate a spec; errors name the line and key path."""
    from tailor.spec import load_spec

    s = load_spec(spec)
    lora = s.model.adapt.lora
    if lora is not None and lora.quantize != "none":  # QLoRA needs this machine's CUDA GPU: say so now, not at train
        from tailor.device import pick_device
        from tailor.models.adapt import check_quantized

        check_quantized(lora, pick_device(s.problem.constraints.device))
    out.print(f"[green]ok[/green] {spec}: {s.name} ({s.problem.output}, {len(s.problem.targets)} target(s); "
              f"road: {s.road})")


@spec_app.command("show")
def spec_show(spec: Path = typer.Argument(..., help="Spec file (YAML).")) -> None:
    """Print the spec with every default filled in; a comment marks each value the road chose, and why."""
    from tailor.spec import load_spec, show_spec

    out.print(show_spec(load_spec(spec)), markup=False, highlight=False, soft_wrap=True)


@app.command()
def init(
    out_path: Path = typer.Option(Path("tailor.yaml"), "--out", "-o", help="Where to write the spec."),
    name: str = typer.Option(None, help="Spec name (names the run folder)."),
    domain: str = typer.Option(None, help="Who the model serves, e.g. 'customer support for a hardware store'."),
    task: str = typer.Option(None, help="What it does, e.g. 'answer questions about product specifications'."),
    output: str = typer.Option(None, help="Output kind: text, label, token-labels or score."),
    data: str = typer.Option(None, help="Data files: a path, folder or glob (relative to the spec)."),
    input_field: str = typer.Option(None, help="Record field with the question/prompt (pairs)."),
    output_field: str = typer.Option(None, help="Record field with the answer (pairs)."),
    text_field: str = typer.Option(None, help="Record field with the text (a plain corpus)."),
    target: list[str] = typer.Option(None, help="Success criterion, e.g. 'exact_match >= 0.95' (repeatable)."),
    device: str = typer.Option(None, help="auto, cpu, cuda or mps."),
    time_budget: str = typer.Option(None, help="Training wall-time budget, e.g. 15m."),
    max_memory: str = typer.Option(None, help="Memory limit, e.g. 8GB."),
    no_input: bool = typer.Option(False, "--no-input", help="Ask nothing; use flags and defaults."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Ask the problem-definition questions and write a valid, commented spec."""
    from tailor.init import Answers, build_spec_text, data_problem, parse_target

    if out_path.exists() and not force:
        raise TailorError(f"{out_path} exists; use --force to overwrite or --out for another file")
    ask = not no_input and sys.stdin.isatty()

    def q(value, prompt: str, default=None, required: bool = False):
        if value is not None or not ask:
            if value is None and required and default is None:
                raise TailorError(f"--{prompt.split(' (')[0].lower().replace(' ', '-')} is required with --no-input")
            return value if value is not None else default
        return typer.prompt(prompt, default=default) if default is not None else typer.prompt(prompt)

    a_domain = q(domain, "Domain (who the model serves)", required=True)
    a_task = q(task, "Task (what it must do)", required=True)
    a_output = q(output, "Output kind (text, label, token-labels, score)", "text")
    a_data = q(data, "Data (path, folder or glob)", required=True)
    while (problem := data_problem(a_data, out_path.parent)) is not None:
        if not ask:
            raise TailorError(f"--data: {problem}")
        err.print(f"[yellow]{escape(problem)}[/yellow]", highlight=False, soft_wrap=True)
        a_data = typer.prompt("Data (path, folder or glob)")
    a_in = q(input_field, "Input field (blank for a plain text corpus)", "")
    a_out = q(output_field, "Output field", "answer") if a_in else None
    a_text = q(text_field, "Text field", "text") if not a_in else "text"
    targets = [parse_target(t) for t in target or []]
    if ask and not target:
        while entry := typer.prompt("Target, e.g. 'exact_match >= 0.95' (blank to finish)", default="",
                                    show_default=False):
            targets.append(parse_target(entry))
    answers = Answers(domain=a_domain, task=a_task, data=a_data, name=name or "", output=a_output,
                      input_field=a_in or None, output_field=a_out, text_field=a_text, targets=targets,
                      device=q(device, "Device (auto, cpu, cuda, mps)", "auto"),
                      time_budget=q(time_budget, "Training time budget (e.g. 15m, blank for none)", "") or None,
                      max_memory=q(max_memory, "Memory limit (e.g. 8GB, blank for none)", "") or None)
    text = build_spec_text(answers)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")
    out.print(f"wrote {out_path}; next: tailor spec check {out_path} && tailor run {out_path}")


@app.command()
def run(
    spec: Path = typer.Argument(..., help="Spec file (YAML)."),
    until: str = typer.Option(None, "--until", help="Stop after this stage (data, tokenizer, model, train, evaluate, report)."),
    start_from: str = typer.Option(None, "--from", help="Run this stage and the later ones again even if unchanged."),
    runs_dir: Path = RUNS_DIR,
) -> None:
    """Run every stage of a spec in order, skipping stages whose inputs have not changed."""
    from tailor.run import STAGE_NAMES, Pipeline, read_run
    from tailor.spec import load_spec
    from tailor.console import progress_bar

    for flag, value in (("--until", until), ("--from", start_from)):
        if value is not None and value not in STAGE_NAMES:
            raise TailorError(f"{flag} {value!r}: expected one of {', '.join(STAGE_NAMES)}")
    s = load_spec(spec)
    with progress_bar() as progress:
        run_dir = Pipeline(s, runs_dir, progress.console).run(until, start_from, progress)
    info = read_run(run_dir)
    targets = info.get("targets")
    if targets:
        out.print(f"targets met: {targets['met']} of {targets['total']}")
    report = run_dir / "report.html"
    out.print(f"run: {run_dir}" + (f"\nreport: {report}" if report.exists() else ""))


@app.command()
def data(
    spec: Path = typer.Argument(..., help="Spec file (YAML)."),
    again: bool = typer.Option(False, "--again", help="Run the data stage even if its inputs have not changed."),
    runs_dir: Path = RUNS_DIR,
) -> None:
    """Read, clean, annotate and split the spec's data (the data stage alone); print what each step did."""
    from tailor.console import progress_bar
    from tailor.run import Pipeline
    from tailor.spec import load_spec

    s = load_spec(spec)
    with progress_bar() as progress:
        run_dir = Pipeline(s, runs_dir, progress.console).run("data", "data" if again else None, progress)
    report = json.loads((run_dir / "data" / "report.json").read_text())
    table = Table("step", "in", "kept", "modified", "dropped")
    for st in report["steps"]:
        table.add_row(st["step"], str(st["in"]), str(st["kept"]), str(st["modified"]),
                      ", ".join(f"{r}: {n}" for r, n in st["dropped"].items()) or "0")
    out.print(table)
    out.print(f"loaded {report['loaded']}, generated {report['generated']}, kept {report['kept']}, dropped "
              f"{report['dropped']}, rejected {report['rejected']}; "
              + ", ".join(f"{k} {v}" for k, v in report["splits"].items()))
    leak = report["duplicates"].get("cross_split_pairs")
    if leak is not None:
        out.print(f"near-duplicate pairs across splits: {leak}")
    for warning in report["warnings"]:
        out.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    out.print(f"data: {run_dir / 'data'}")


@app.command()
def train(
    spec: Path = typer.Argument(..., help="Spec file (YAML)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted training of this spec from its "
                                                        "last good checkpoint (an error if there is none)."),
    nproc: int = typer.Option(1, "--nproc", help="Train on this many local processes (DDP or FSDP, see train.distributed)."),
    runs_dir: Path = RUNS_DIR,
) -> None:
    """Run the stages through training. An interrupted training always continues from its last good checkpoint."""
    from tailor.console import progress_bar
    from tailor.run import STAGES, Pipeline, work_dir
    from tailor.spec import load_spec
    from tailor.train.checkpoint import Checkpoints
    from tailor.run import train_on_ranks
    from tailor.train.distributed import launch, world_size

    if nproc > 1 and world_size() == 1:
        raise typer.Exit(launch(nproc, ["train", str(spec), "--runs-dir", str(runs_dir)] + (["--resume"] if resume else [])))
    s = load_spec(spec)
    with progress_bar() as progress:
        pipeline = Pipeline(s, runs_dir, progress.console)
        if resume:
            candidate = pipeline.choose_run_dir(STAGES[:4], force=False)
            folder = work_dir(candidate, "train") / "checkpoints"
            if Checkpoints(folder, warn=lambda m: None).latest_good(drop_bad=False) is None:
                raise TailorError(f"--resume: no interrupted training of {s.name} to continue (no good checkpoint in {folder})")
        if world_size() > 1:
            run_dir = train_on_ranks(s, runs_dir, progress.console, progress)
        else:
            run_dir = pipeline.run(until="train", progress=progress)
    if os.environ.get("RANK", "0") != "0":
        return
    summary_path = run_dir / "train" / "summary.json"
    if summary_path.is_file():
        t = json.loads(summary_path.read_text())
        best = t["best_validation"]
        out.print(f"trained {t['steps']} steps in {t['seconds']}s ({t['tokens_per_s']:,.0f} real tokens/s, "
                  f"{t.get('padding_fraction', 0.0):.1%} padding); "
                  f"stopped by {t['stopped_by']}; best {best['metric']} {best['value']:.4f} at step {best['step']}")
    out.print(f"run: {run_dir}")


@app.command()
def tune(
    spec: Path = typer.Argument(..., help="Spec file (YAML) with a tune: section."),
    trials: int = typer.Option(None, "--trials", help="Finished trials to reach (default: tune.trials)."),
    parallel: int = typer.Option(None, "--parallel", help="Worker processes on this machine (default: tune.parallel)."),
    storage: str = typer.Option(None, "--storage", help="optuna storage URL, e.g. postgresql://user:pw@host/db "
                                                        "(default: tune.storage, else SQLite in the runs folder)."),
    worker: bool = typer.Option(False, "--worker", help="Only run trials (for extra processes or machines)."),
    runs_dir: Path = RUNS_DIR,
) -> None:
    """Search the spec keys in tune.space with optuna; write the trials table, plot and the best spec."""
    from tailor.spec import load_spec
    from tailor.studies.tune import run_tune

    s = load_spec(spec)
    if s.tune is not None:
        updates = {k: v for k, v in (("trials", trials), ("parallel", parallel), ("storage", storage)) if v is not None}
        s.tune = type(s.tune).model_validate({**s.tune.model_dump(), **updates})
    result = run_tune(s, spec, runs_dir, err, worker)
    if worker:
        return
    table = Table("trial", "state", s.tune.metric, *s.tune.space)
    rows = json.loads((Path(result["folder"]) / "trials.json").read_text())["trials"]
    for t in rows:
        table.add_row(str(t["number"]), t["state"], "-" if t["value"] is None else f"{t['value']:.5g}",
                      *[str(t["params"].get(k, "")) for k in s.tune.space])
    out.print(table)
    out.print(f"best: trial {result['best_trial']} ({s.tune.metric} {result['best_value']:.5g}); "
              f"{result['pruned']} of {result['trials']} trials pruned")
    out.print(f"best spec: {result['folder']}/best.yaml  (tailor run it)\nreport: {result['folder']}/report.html")


@app.command()
def runs(runs_dir: Path = RUNS_DIR) -> None:
    """List runs with their status, targets met and key metrics."""
    from tailor.run import list_runs

    rows = list_runs(runs_dir)
    if not rows:
        out.print(f"no runs under {runs_dir}")
        return
    table = Table("run", "status", "targets met", "key metrics", "created")
    for r in rows:
        t = r.get("targets")
        keys = [k for k in dict.fromkeys((t or {}).get("keys", []) + ["test/loss"]) if k in r["metrics"]][:4]
        table.add_row(f"{r.get('name')}/{r.get('run_id')}", r.get("status", "?"),
                      f"{t['met']}/{t['total']}" if t else "-",
                      ", ".join(f"{k}={r['metrics'][k]:.4g}" for k in keys) or "-", r.get("created", ""))
    out.print(table)


@app.command()
def generate(
    model: Path = typer.Argument(..., help="A run directory or a model folder."),
    prompt: str = typer.Argument(..., help="The prompt (for a question-answer model: the question)."),
    max_tokens: int = typer.Option(32, help="Most new tokens."),
    temperature: float = typer.Option(0.0, help="0 is greedy."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    seed: int = typer.Option(None, help="Seed for sampling."),
    as_json: bool = typer.Option(False, "--json", help="Print the completion with token counts as JSON."),
) -> None:
    """Complete a prompt with a trained model."""
    from tailor.inference import Generator

    c = Generator(model).complete(prompt, max_tokens, temperature, top_p, seed)
    if as_json:
        out.print_json(json.dumps(c.__dict__))
    else:
        out.print(c.text, markup=False, highlight=False)


from tailor.deploy.commands import register as _register_deploy  # noqa: E402  (serve, keys, registry, ...)
from tailor.evaluate.human.commands import human_app  # noqa: E402

_register_deploy(app)
app.add_typer(human_app, name="human")


@app.command()
def ablate(spec: Path = typer.Argument(..., help="Spec file (YAML) with evaluate.ablation.variants."),
           runs_dir: Path = RUNS_DIR) -> None:
    """Run each ablation variant (same budget, N seeds, cached) and report each metric's change against the baseline."""
    from tailor.console import progress_bar
    from tailor.report import results_path
    from tailor.studies.ablation import run_ablation
    from tailor.spec import load_spec

    s = load_spec(spec)
    with progress_bar() as progress:
        result, run_dir = run_ablation(s, runs_dir, progress.console, progress)
    table = Table("variant", *[f"Δ {k} [interval]" for k in result["metrics"]])
    for v in result["variants"][1:]:
        cells = []
        for key in result["metrics"]:
            d = v["deltas"].get(key)
            cells.append(f"{d['delta']:+.4g} [{d['low']:+.4g}, {d['high']:+.4g}]" if d else "-")
        table.add_row(v["name"], *cells)
    out.print(table)
    path = results_path(run_dir.parent, s)
    out.print(f"results: {path}\nreport: {run_dir / 'report.html'}")


REFINE_HELP = (
    'From unmet targets to a spec that meets them, with the evidence for each step.\n\n'
    '1. Diagnose the run: its curves (under- or over-fitting, still improving, unstable, cut by the '
    'budget), its error analysis (confused classes, weak slices) and its data report (imbalance, '
    'near-duplicates across splits, drops).\n\n'
    '2. Propose levers from the catalogue (tailor.refine.levers): learning rate, warmup, longer training,'
    ' more time, unfreezing, LoRA rank, width, depth, a pretrained road, dropout, weight decay, label '
    'smoothing, early stopping, class weights, a near-duplicate cleaning step, grouping near-duplicates.\n\n'
    '3. Try them as ordinary cached runs judged on VALIDATION only: a change is kept when the paired '
    "bootstrap interval of its difference on an unmet target's metric excludes zero in that metric's "
    'better direction; the kept changes of a round are combined. Cheap levers go first; with more '
    'candidates than --per-round, each is first screened on a third of its training (successive halving) '
    'and the best go on to full trials.\n\n'
    '4. Stop when every target is met on validation with its whole interval, when no lever is left, or '
    'when the budget cannot pay for another trial.\n\n'
    '5. Run the final spec once: the only evaluation of the TEST split; the verdict says plainly whether '
    'the targets are met there.\n\n'
    'Writes runs/NAME/refine/: report.html (every round: evidence, change, effect with interval, kept or '
    "dropped and why), refined.yaml and refined.diff; the spec's own report gains the rounds.")


@app.command(help=REFINE_HELP)
def refine(
    spec: Path = typer.Argument(..., help="Spec file (YAML) with problem.targets."),
    budget: str = typer.Option("1h", "--budget", help="Wall time for the whole refinement, e.g. 30m or 2h: no trial "
                                                      "starts that it cannot pay for, and the final run is reserved."),
    from_run: Path = typer.Option(None, "--from", help="The run to start from (default: the latest finished run of "
                                                       "the spec); its targets are the starting point of the report."),
    per_round: int = typer.Option(3, "--per-round", min=1, help="Levers tried in each round."),
    runs_dir: Path = RUNS_DIR,
) -> None:
    """From unmet targets to a spec that meets them, with the evidence for each step (see REFINE_HELP)."""
    from tailor.console import progress_bar
    from tailor.refine.loop import refine as run_refine
    from tailor.spec import load_spec
    from tailor.spec.base import parse_duration

    try:
        seconds = parse_duration(budget)
    except ValueError as e:
        raise TailorError(f"--budget: {e}") from None
    s = load_spec(spec)
    if not s.problem.targets:
        raise TailorError(f"{spec}: problem.targets is empty; refine works towards targets, e.g. "
                          "{metric: f1_macro, split: test, at_least: 0.8}")
    with progress_bar() as progress:
        result = run_refine(s, runs_dir, seconds, from_run, progress.console, per_round, progress)
    for t in result["trials"]:
        effect = "; ".join(f"{e['metric']} {e['delta']:+.4g} [{e['interval'][0]:+.4g}, {e['interval'][1]:+.4g}]"
                           for e in t["effects"])
        change = ", ".join(f"{k}={v}" for k, v in t["changes"].items())
        out.print(f"{t['label']}: {change}" + (f"; {effect}" if effect else "") +
                  f" -> {'kept' if t['kept'] else 'dropped'} ({t['why']})", markup=False, highlight=False)
    for t in result["test"]:
        interval = t["interval"]
        shown = f" [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else ""
        value = "not measured" if t["value"] is None else f"{t['value']:.4g}{shown}"
        out.print(f"{t['target']}: {value} -> {'met' if t['met'] else 'NOT met'}")
    out.print(f"targets {'met' if result['met'] else 'NOT met'} on test after {len(result['trials'])} trial(s) in "
              f"{result['seconds']:.0f}s (stopped: {result['stopped']})")
    paths = result["paths"]
    out.print(f"refined spec: {paths['refined.yaml']}\nreport: {paths['report.html']}\nfinal run: {result['final_run']}")


@app.command()
def compare(run_a: Path = typer.Argument(..., help="A finished run directory."),
            run_b: Path = typer.Argument(..., help="Another finished run directory."),
            html: Path = typer.Option(None, "--html", help="Also write the comparison as an HTML page."),
            as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
            samples: int = typer.Option(1000, help="Bootstrap resamples."),
            seed: int = typer.Option(0, help="Bootstrap seed.")) -> None:
    """Show two runs' metrics side by side with their differences and whether each is significant."""
    from tailor.evaluate.compare import compare_html, compare_runs
    from tailor.spec.evaluate import Bootstrap

    boot = Bootstrap(samples=samples, seed=seed)
    rows = compare_runs(run_a, run_b, boot)
    if html:
        html.write_text(compare_html(run_a, run_b, rows, boot.confidence), encoding="utf-8")
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table("metric", "a", "b", "b - a", f"{boot.confidence:.0%} interval", "p", "significant")
    for r in rows:
        lo, hi = r["interval"]
        table.add_row(r["metric"], f"{r['a']:.4g}", f"{r['b']:.4g}", f"{r['delta']:+.4g}",
                      f"[{lo:+.4g}, {hi:+.4g}]", f"{r['p_value']:.3g}",
                      f"yes ({r['better']} better)" if r["significant"] else "no")
    out.print(f"a: {run_a}\nb: {run_b}")
    out.print(table)


def main() -> None:
    """Console entry point: user errors print one message and exit 2; --debug shows the traceback."""
    try:
        app()
    except TailorError as e:
        if "--debug" in sys.argv:
            raise
        err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
