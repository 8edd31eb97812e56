"""Hyperparameter search: a real optuna study on SQLite and on a real PostgreSQL server."""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tailor.errors import TailorError
from tailor.spec import load_spec
from tailor.studies.tune import dimension, run_tune, with_values

# the spec's own lr (3e-3) is trial 0; the sampler then draws from a range that is mostly far too low,
# and the median pruner stops such trials at their first validation pass
TUNED = {"train": {"max_steps": 12, "eval_every": 3, "optimizer": {"lr": 3.0e-3}},
         "tune": {"method": "bayesian", "trials": 3, "pruner": "median",
                  "space": {"train.optimizer.lr": [1.0e-7, 3.0e-3, "log"]}}}


class Quiet:
    def print(self, *args, **kwargs):
        pass


def test_three_trials_with_pruning_write_table_plot_and_best_spec(make_spec, tmp_path):
    spec_path = make_spec(TUNED)
    result = run_tune(load_spec(spec_path), spec_path, tmp_path / "runs", Quiet())
    folder = tmp_path / "runs" / "tiny" / "tune"
    trials = json.loads((folder / "trials.json").read_text())
    assert len(trials["trials"]) == 3 and (tmp_path / "runs" / "tiny" / "tune.db").is_file()  # SQLite by default
    assert trials["trials"][0]["params"] == {"train.optimizer.lr": 3.0e-3}
    states = [t["state"] for t in trials["trials"]]
    assert states[0] == "complete" and "pruned" in states and result["pruned"] == states.count("pruned")
    pruned = [t for t in trials["trials"] if t["state"] == "pruned"]
    assert all(t["last_step"] < 12 for t in pruned)                  # stopped before the end
    assert result["best_trial"] == 0
    best = load_spec(folder / "best.yaml")                           # a spec `tailor run` takes as it is
    assert best.train.optimizer.lr == 3.0e-3
    page = (folder / "report.html").read_text()
    assert page.count("<tr") == 4 and "0 (best)" in page and "data:image/png;base64," in page
    assert (folder / "trials.png").read_bytes()[:4] == b"\x89PNG"


def test_grid_and_random_studies_take_their_samplers(make_spec, tmp_path):
    import optuna

    from tailor.studies.tune import make_study

    grid = load_spec(make_spec(TUNED | {"tune": TUNED["tune"] | {"method": "grid", "pruner": "hyperband",
                                                                 "space": {"train.batch_size": [4, 8]}}}))
    study, dims = make_study(grid, tmp_path / "runs")
    assert isinstance(study.sampler, optuna.samplers.GridSampler) and dims == {"train.batch_size": ("choice", [4, 8])}
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    rand = load_spec(make_spec(TUNED | {"tune": TUNED["tune"] | {"method": "random", "study": "r"}}, name="r.yaml"))
    study, _ = make_study(rand, tmp_path / "runs")
    assert isinstance(study.sampler, optuna.samplers.RandomSampler)
    assert [t.params for t in study.get_trials(deepcopy=False)] == [{}]  # the spec's own values, queued first
    assert study.get_trials()[0].system_attrs["fixed_params"] == {"train.optimizer.lr": 3.0e-3}


def test_search_space_errors_name_the_key(make_spec):
    spec = load_spec(make_spec(TUNED))
    with pytest.raises(TailorError, match="tune.space.train.optimiser.lr: the spec has no key"):
        with_values(spec, {"train.optimiser.lr": 0.1})
    with pytest.raises(TailorError, match="tune.space: train.batch_size"):
        with_values(spec, {"train.batch_size": "many"})
    with pytest.raises(TailorError, match="low .* must be below high"):
        dimension("train.optimizer.lr", [0.1, 0.01], "bayesian")
    with pytest.raises(TailorError, match="grid search takes lists of values"):
        dimension("train.optimizer.lr", [0.01, 0.1, "log"], "grid")
    assert dimension("train.batch_size", [8, 64], "random") == ("int", 8, 64, False)
    assert dimension("train.batch_size", [8, 64, "choices"], "random") == ("choice", [8, 64])
    assert dimension("train.schedule.name", ["cosine", "linear", "constant"], "bayesian")[0] == "choice"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server (Debian's postgresql package, installed by .ci/run) on a free port."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.fail("PostgreSQL is not installed: apt-get install postgresql (.ci/run does)")
    bindir = Path(binaries[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="tailor-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
    port = _free_port()
    data = root / "data"
    subprocess.run(as_user + [str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start",
                              "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_study_shared_by_two_worker_processes(make_spec, tmp_path, postgres):
    import optuna

    spec_path = make_spec(TUNED | {"tune": TUNED["tune"] | {"storage": postgres, "parallel": 2, "study": "shared"}})
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    start = time.time()
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "tune", str(spec_path), "--runs-dir", str(tmp_path / "runs")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "best spec:" in res.stdout and "trials pruned" in res.stdout
    study = optuna.load_study(study_name="shared", storage=postgres)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 3 and all(t.datetime_start.timestamp() >= start - 5 for t in finished)
    runs = {t.user_attrs.get("run_dir") for t in study.trials if t.user_attrs.get("run_dir")}
    assert len(runs) >= 1 and not (tmp_path / "runs" / "tiny" / "tune.db").exists()   # nothing in SQLite
    best = yaml.safe_load((tmp_path / "runs" / "tiny" / "tune" / "best.yaml").read_text())
    assert best["tune"]["storage"] == postgres


def test_unreachable_storage_is_a_clear_error(make_spec, tmp_path):
    port = _free_port()  # nothing listens there
    spec_path = make_spec(TUNED | {"tune": TUNED["tune"] | {"storage": f"postgresql://postgres@127.0.0.1:{port}/x"}})
    with pytest.raises(TailorError, match="tune.storage: cannot open postgresql://"):
        run_tune(load_spec(spec_path), spec_path, tmp_path / "runs", Quiet())
