"""`tailor human ...`: studies, the rating page, Label Studio and CSV exchange, results."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tailor.errors import TailorError

human_app = typer.Typer(help="Human evaluation: studies, the rating page, Label Studio and CSV, results.",
                        no_args_is_help=True)
HUMAN_DB = typer.Option(Path("runs/human.sqlite"), "--db", help="SQLite file that holds the studies and ratings.")
out = Console()


@human_app.command("create")
def human_create(name: str = typer.Argument(..., help="Study name."),
                 run: Path = typer.Argument(..., help="The run whose answers are rated."),
                 versus: Path = typer.Option(None, "--vs", help="A second run: a blind A/B study of the two."),
                 split: str = typer.Option("test", help="Split whose answers are rated."),
                 n: int = typer.Option(50, help="Items to sample (0: every answered example)."),
                 criteria: str = typer.Option("fluency,coherence,relevance",
                                              help="Likert criteria, comma-separated (empty: none)."),
                 winner: bool = typer.Option(True, "--winner/--no-winner", help="A/B: also pick a winner."),
                 seed: int = typer.Option(0, help="Seed for sampling and for the sides."),
                 db: Path = HUMAN_DB) -> None:
    """Create a study from a run, or a blind A/B study of two runs (randomised sides)."""
    from tailor.evaluate.human.store import connect, create_study

    names = tuple(c.strip() for c in criteria.split(",") if c.strip())
    with connect(db) as con:
        study = create_study(con, name, run, versus, split, n or None, names, winner, seed)
        count = con.execute("SELECT COUNT(*) FROM items WHERE study = ?", (name,)).fetchone()[0]
    out.print(f"study {study.name}: {study.kind}, {count} items, questions {', '.join(study.questions())} ({db})")


@human_app.command("list")
def human_list(db: Path = HUMAN_DB) -> None:
    """List the studies with their items and raters."""
    from tailor.evaluate.human.store import connect, list_studies

    with connect(db) as con:
        rows = list_studies(con)
    table = Table("study", "kind", "items", "raters", "run a", "run b", "created")
    for r in rows:
        table.add_row(r["name"], r["kind"], str(r["items"]), str(r["raters"]), r["run_a"], r["run_b"] or "-",
                      r["created"])
    out.print(table if rows else f"no studies in {db}")


@human_app.command("serve")
def human_serve(host: str = typer.Option("127.0.0.1", help="Address to listen on."),
                port: int = typer.Option(8100, help="Port."), db: Path = HUMAN_DB) -> None:
    """Serve the rating pages (http://HOST:PORT/) for every study in the database."""
    from tailor.evaluate.human.server import serve as serve_pages

    out.print(f"rating pages on http://{host}:{port}/ ({db})")
    serve_pages(db, host, port)


@human_app.command("export")
def human_export(name: str = typer.Argument(..., help="Study name."),
                 dest: Path = typer.Argument(..., help="Output file (.json for Label Studio, .csv)."),
                 db: Path = HUMAN_DB) -> None:
    """Export a study as Label Studio tasks (+ labeling config .xml) or as a CSV to fill in."""
    from tailor.evaluate.human.exchange import export_csv, export_labelstudio
    from tailor.evaluate.human.store import connect

    with connect(db) as con:
        if dest.suffix == ".json":
            tasks, config = export_labelstudio(con, name, dest)
            out.print(f"Label Studio tasks: {tasks}\nlabeling config: {config}")
        elif dest.suffix == ".csv":
            out.print(f"CSV: {export_csv(con, name, dest)}")
        else:
            raise TailorError(f"{dest}: expected a .json (Label Studio) or .csv file name")


@human_app.command("import")
def human_import(name: str = typer.Argument(..., help="Study name."),
                 source: Path = typer.Argument(..., help="A Label Studio JSON export or a filled-in CSV."),
                 db: Path = HUMAN_DB) -> None:
    """Import ratings from a Label Studio JSON export or a filled-in CSV."""
    from tailor.evaluate.human.exchange import import_csv, import_labelstudio
    from tailor.evaluate.human.store import connect

    if not source.is_file():
        raise TailorError(f"{source}: file not found")
    with connect(db) as con:
        counts = import_labelstudio(con, name, source) if source.suffix == ".json" else import_csv(con, name, source)
    out.print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))


@human_app.command("results")
def human_results(name: str = typer.Argument(..., help="Study name."),
                  as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
                  db: Path = HUMAN_DB) -> None:
    """Mean scores with intervals, win rate with interval, and inter-rater agreement."""
    from tailor.evaluate.human.results import study_results
    from tailor.evaluate.human.store import connect

    with connect(db) as con:
        res = study_results(con, name)
    if as_json:
        out.print_json(json.dumps(res))
        return

    def f(v) -> str:
        return "-" if v is None else f"{v:.3g}"

    table = Table("criterion", "run", "mean", "interval", "ratings", "alpha", "kappa")
    for s in res["scores"]:
        iv = s["interval"]
        table.add_row(s["criterion"], s["side"] or "a", f(s["mean"]), f"[{f(iv[0])}, {f(iv[1])}]" if iv else "-",
                      str(s["ratings"]), f(s["alpha"]), f(s["kappa"]))
    out.print(f"{res['study']}: {res['ratings']} ratings from {res['raters']} rater(s)")
    out.print(table)
    if "winner" in res:
        w = res["winner"]
        iv = w["interval_a"]
        out.print(f"winner: a {w['counts']['a']}, b {w['counts']['b']}, tie {w['counts']['tie']}; win rate of a "
                  f"{f(w['win_rate_a'])} " + (f"[{f(iv[0])}, {f(iv[1])}]" if iv else "") +
                  f"; alpha {f(w['alpha'])}, kappa {f(w['kappa'])}")
