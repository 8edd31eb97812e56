import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tailor.artifacts import MARKER, hash_tree
from tailor.errors import TailorError
from tailor.run import STAGE_NAMES, Pipeline, list_runs, read_run
from tailor.spec import load_spec


def stage_status(run_dir: Path) -> dict:
    return {k: v["status"] for k, v in read_run(run_dir)["stages"].items()}


def test_finished_run_has_every_artifact(finished_run):
    _, run_dir = finished_run
    info = read_run(run_dir)
    assert info["status"] == "complete"
    for name in STAGE_NAMES:
        assert (run_dir / name / MARKER).is_file(), name
    assert (run_dir / "spec.resolved.yaml").is_file()
    for name in ("train", "validation", "test"):
        assert (run_dir / "data" / f"{name}.parquet").is_file()
    assert (run_dir / "tokenizer" / "tokenizer.json").is_file()
    model = run_dir / "train" / "model"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in model.iterdir()}
    assert list((run_dir / "train" / "checkpoints").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("validation/loss", "test/loss", "test/perplexity", "test/bits_per_byte", "test/exact_match"):
        assert isinstance(metrics[key], float), key
    data = json.loads((run_dir / "data" / "report.json").read_text())
    assert data["loaded"] == data["kept"] + data["dropped"] == sum(data["splits"].values()) + data["dropped"]


def test_report_lists_targets_met_and_not_met(finished_run):
    _, run_dir = finished_run
    page = (run_dir / "report.html").read_text()
    assert "test/exact_match &gt;= 0" in page and "validation/loss &lt;= 0.001" in page
    assert "<td class='met'>met</td>" in page and "<td class='unmet'>not met</td>" in page
    assert "Targets: 1 of 2 met" in page and "data:image/png;base64," in page
    assert read_run(run_dir)["targets"] == {"met": 1, "total": 2, "keys": ["test/exact_match", "validation/loss"]}


def test_training_logged_decreasing_loss(finished_run):
    _, run_dir = finished_run
    rows = [json.loads(x) for x in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in rows if r["split"] == "train"]
    assert len(train) == 12 and train[-1] < train[0]
    assert [r["step"] for r in rows if r["split"] == "validation"] == [6, 12]
    assert all(r["tokens_per_s"] > 0 for r in rows if r["split"] == "train")


def test_second_run_skips_every_stage(make_spec, tmp_path):
    spec = load_spec(make_spec())
    first = Pipeline(spec, tmp_path / "runs").run()
    before = {n: hash_tree(first / n) for n in STAGE_NAMES}
    second = Pipeline(load_spec(make_spec()), tmp_path / "runs").run()
    assert second == first
    assert set(stage_status(second).values()) == {"skipped"}
    assert {n: hash_tree(first / n) for n in STAGE_NAMES} == before
    assert len(list((tmp_path / "runs" / "tiny").iterdir())) == 1


def test_changed_section_makes_new_run_and_reuses_upstream(make_spec, tmp_path):
    first = Pipeline(load_spec(make_spec()), tmp_path / "runs").run()
    changed = load_spec(make_spec({"train": {"max_steps": 6}}))
    second = Pipeline(changed, tmp_path / "runs").run()
    assert second != first and read_run(first)["status"] == "complete"
    status = stage_status(second)
    assert status == {"data": "reused", "tokenizer": "reused", "model": "reused", "train": "done",
                      "evaluate": "done", "report": "done"}
    a, b = first / "model" / "model.safetensors", second / "model" / "model.safetensors"
    assert os.stat(a).st_ino == os.stat(b).st_ino  # hard link, no copy
    assert len([r for r in list_runs(tmp_path / "runs")]) == 2


def test_until_then_continue_in_place(make_spec, tmp_path):
    spec = load_spec(make_spec())
    run_dir = Pipeline(spec, tmp_path / "runs").run(until="tokenizer")
    assert read_run(run_dir)["status"] == "partial" and not (run_dir / "model").exists()
    again = Pipeline(spec, tmp_path / "runs").run()
    assert again == run_dir
    assert stage_status(run_dir)["data"] == "skipped" and stage_status(run_dir)["train"] == "done"
    assert read_run(run_dir)["status"] == "complete"


def test_from_forces_rerun_in_a_new_run(make_spec, tmp_path):
    spec = load_spec(make_spec())
    first = Pipeline(spec, tmp_path / "runs").run()
    second = Pipeline(spec, tmp_path / "runs").run(start_from="evaluate")
    assert second != first
    assert stage_status(second)["train"] == "reused" and stage_status(second)["evaluate"] == "done"
    with pytest.raises(TailorError, match="comes after"):
        Pipeline(spec, tmp_path / "runs").run(until="data", start_from="train")


def test_failed_stage_keeps_previous_artifacts(make_spec, tmp_path, monkeypatch):
    import dataclasses

    import tailor.run

    spec = load_spec(make_spec())
    run_dir = Pipeline(spec, tmp_path / "runs").run(until="train")
    before = hash_tree(run_dir / "train")

    def broken(out_dir, progress=None, **kwargs):
        (out_dir / "model").mkdir()
        (out_dir / "model" / "model.safetensors").write_bytes(b"half a file")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tailor.run, "STAGES", tuple(dataclasses.replace(s, run=broken) if s.name == "train" else s
                                                    for s in tailor.run.STAGES))
    with pytest.raises(RuntimeError, match="disk on fire"):
        Pipeline(spec, tmp_path / "runs").run(until="train", start_from="train")
    assert hash_tree(run_dir / "train") == before
    assert read_run(run_dir)["status"] == "failed" and "disk on fire" in read_run(run_dir)["error"]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".train.")]


def test_killed_stage_leaves_previous_artifacts_and_resumes(make_spec, tmp_path):
    spec_path = make_spec({"train": {"max_steps": 4000, "eval_every": 4000}})
    spec = load_spec(spec_path)
    run_dir = Pipeline(load_spec(make_spec({"train": {"max_steps": 4000, "eval_every": 4000}})),
                       tmp_path / "runs").run(until="model")
    cmd = [sys.executable, "-m", "tailor.cli", "run", str(spec_path), "--runs-dir", str(tmp_path / "runs"),
           "--until", "train"]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 120
    while not any(p.name.startswith(".train.tmp") for p in run_dir.iterdir()):
        assert time.time() < deadline and proc.poll() is None, "train never started"
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "train").exists()                      # nothing half-written in place
    assert (run_dir / "model" / MARKER).is_file()                # earlier stages untouched
    assert read_run(run_dir)["status"] == "running"              # killed before it could say otherwise
    spec.train.max_steps = 3  # finish quickly: a different spec makes a new run that reuses data..model
    done = Pipeline(spec, tmp_path / "runs").run(until="train")
    assert stage_status(done)["model"] == "reused" and (done / "train" / MARKER).is_file()


def test_cli_run_and_runs(make_spec, tmp_path):
    spec = make_spec()
    env = {**os.environ, "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "run", str(spec), "--runs-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert "targets met: 1 of 2" in res.stdout and "report: " in res.stdout
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "runs", "--runs-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, env=env)
    assert "complete" in res.stdout and "1/2" in res.stdout and "test/exact_match" in res.stdout
