"""`tailor compare`: two runs side by side, differences and their significance."""

import json

import pytest
from typer.testing import CliRunner

from tailor.cli import app
from tailor.errors import TailorError
from tailor.evaluate.compare import compare_html, compare_runs
from tailor.run import Pipeline
from tailor.spec import load_spec
from tailor.spec.evaluate import Bootstrap


@pytest.fixture(scope="module")
def longer_run(tmp_path_factory):
    """The shared tiny spec trained for longer: same data split, so the comparison is paired."""
    import yaml

    from conftest import BASE_SPEC, merge, write_pairs

    root = tmp_path_factory.mktemp("longer")
    write_pairs(root / "data" / "items.jsonl")
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(merge(BASE_SPEC, {"train": {"max_steps": 60, "eval_every": 30,
                                                               "optimizer": {"lr": 0.01}}})))
    return Pipeline(load_spec(path), root / "runs").run()


def test_a_run_against_itself_differs_nowhere(finished_run):
    _, run_dir = finished_run
    rows = compare_runs(run_dir, run_dir, Bootstrap(samples=200))
    assert rows and all(r["delta"] == 0 and not r["significant"] and r["paired"] for r in rows)


def test_longer_training_lowers_the_loss_significantly(finished_run, longer_run):
    _, short = finished_run
    rows = {r["metric"]: r for r in compare_runs(short, longer_run, Bootstrap(samples=500))}
    loss = rows["validation/loss"]
    assert loss["paired"] and loss["delta"] == pytest.approx(loss["b"] - loss["a"])
    assert loss["delta"] < 0 and loss["interval"][1] < 0 and loss["significant"] and loss["better"] == "b"
    assert loss["p_value"] < 0.05
    page = compare_html(short, longer_run, list(rows.values()), 0.95)
    assert "validation/loss" in page and "significant" in page


def test_compare_cli_and_bad_run(finished_run, longer_run, tmp_path):
    _, short = finished_run
    html = tmp_path / "cmp.html"
    res = CliRunner().invoke(app, ["compare", str(short), str(longer_run), "--samples", "200", "--json",
                                   "--html", str(html)])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert {"metric", "a", "b", "delta", "interval", "p_value", "significant"} <= set(rows[0]) and html.is_file()
    with pytest.raises(TailorError, match="not a finished run"):
        compare_runs(short, tmp_path)
