"""Data at rest: `tailor encrypt RUN` leaves no record readable, and Tailor's databases are the owner's alone."""

from __future__ import annotations

import json
import shutil
import stat

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tailor.cli import app as cli
from tailor.encryption import PLAINTEXT, SUFFIX


def _texts(run):
    rows = [r for split in ("train", "validation", "test") for r in pq.read_table(run / "data" / f"{split}.parquet").to_pylist()]
    return {r["question"] for r in rows} | {r["record"]["question"] for r in
                                            (json.loads(x) for x in (run / "data" / "dropped.jsonl").read_text().splitlines())}


def test_encrypting_a_run_seals_every_file_but_the_listed_exceptions(finished_run, tmp_path, monkeypatch):
    from tailor.splits import load_split
    from tailor.encryption import marker_summary
    from tailor.evaluate.compare import _results
    from tailor.evaluate.predictions import read_predictions
    from tailor.inference import Generator
    from tailor.run import read_marker

    _, run_dir = finished_run
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    texts = _texts(run)
    assert len(texts) > 10
    before = {"marker": read_marker(run / "data"), "results": _results(run), "predictions": read_predictions(run),
              "answer": Generator(run).complete("what colour is item 5", 4).text}
    assert any(t in (run / "evaluate" / "errors.json").read_text() for t in texts)  # the leak this guards against
    runner = CliRunner()
    monkeypatch.setenv("TAILOR_DATA_KEY", runner.invoke(cli, ["encrypt", "--new-key"]).stdout.strip())
    res = runner.invoke(cli, ["encrypt", str(run)])
    assert res.exit_code == 0, res.output

    plain = [p for p in run.rglob("*") if p.is_file() and not p.name.endswith(SUFFIX)]
    assert plain and {p.name for p in plain} <= set(PLAINTEXT), sorted(str(p.relative_to(run)) for p in plain)
    for path in plain:
        body = path.read_text(errors="replace")
        assert not [t for t in texts if t in body], path
    for name in ("evaluate/errors.json", "report.html", "data/report.json", "evaluate/predictions.parquet",
                 "data/dropped.jsonl", "tokenizer/report.json", "report/report.html", "train/summary.json"):
        assert (run / (name + SUFFIX)).is_file() and not (run / name).exists(), name

    # a stage marker keeps the hashes the runner compares; the summary (it quotes dropped records) is sealed
    marker = read_marker(run / "data")
    assert set(marker["summary"]) == {"sealed"} and marker_summary(run / "data" / ".tailor-stage.json") == \
        before["marker"]["summary"]
    assert {k: v for k, v in marker.items() if k != "summary"} == \
        {k: v for k, v in before["marker"].items() if k != "summary"}
    # what Tailor reads back from a finished run, it reads from memory
    assert _results(run) == before["results"]
    assert read_predictions(run) == before["predictions"]
    assert len(load_split(run / "data", "train")) > 0
    assert Generator(run).complete("what colour is item 5", 4).text == before["answer"]


def test_the_exceptions_are_listed_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("Encryption at rest"):]
    assert all(f"`{name}`" in section[:4000] for name in PLAINTEXT), [n for n in PLAINTEXT if f"`{n}`" not in section]


@pytest.mark.parametrize("make", ["keys", "feedback", "registry", "human"])
def test_databases_are_created_owner_only(tmp_path, make):
    from tailor.deploy.auth import KeyStore
    from tailor.deploy.feedback import FeedbackStore
    from tailor.deploy.registry import Registry
    from tailor.evaluate.human.store import connect

    if make == "keys":
        path = tmp_path / "keys.db"
        KeyStore(path).create("a", ["infer"])
    elif make == "feedback":
        path = tmp_path / "feedback.db"
        FeedbackStore(path).add("cmpl-1", True, None, None, "q", "v1", "k")
    elif make == "registry":
        path = tmp_path / "registry" / "registry.db"
        Registry(tmp_path / "registry")
    else:
        path = tmp_path / "human.sqlite"
        with connect(path):
            pass
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    leftovers = [p for p in tmp_path.rglob("*.db-*") if stat.S_IMODE(p.stat().st_mode) != 0o600]
    assert not leftovers


def test_an_existing_world_readable_database_is_tightened(tmp_path):
    from tailor.deploy.auth import KeyStore

    path = tmp_path / "keys.db"
    KeyStore(path)
    path.chmod(0o644)
    KeyStore(path).create("b", ["infer"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_tuning_study_is_owner_only(tmp_path):
    from tailor.spec.train import Tune
    from tailor.studies.tune import storage_url

    url = storage_url(Tune(), tmp_path, "tiny")
    assert stat.S_IMODE((tmp_path / "tiny" / "tune.db").stat().st_mode) == 0o600 and url.endswith("tune.db")
