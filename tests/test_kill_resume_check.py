"""benchmarks/kill_resume.py's check, on a short run: it passes real resumes and fails restarts from step 0.

Training is deterministic, so a run that lost its checkpoints and restarts from step 0 logs the same
curve and ends with the same weights; only the resume step tells the two apart.
"""

import copy
import importlib.util
import shutil
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_resume.py"


@pytest.fixture(scope="module")
def kill_resume():
    spec = importlib.util.spec_from_file_location("kill_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def short_spec(kill_resume) -> dict:
    spec = copy.deepcopy(kill_resume.SPEC)
    spec["train"].update({"max_steps": 120, "eval_every": 10})
    return spec


def remove_checkpoints(runs: Path) -> None:
    for folder in runs.glob("*/*/train.work/checkpoints"):
        shutil.rmtree(folder)


def test_check_fails_when_checkpoints_are_removed(kill_resume, tmp_path):
    result = kill_resume.trial(tmp_path, 2, spec_dict=short_spec(kill_resume), before_resume=remove_checkpoints,
                               log=lambda line: None)
    assert result["curve_identical"] and result["weights_identical"]  # what the old check looked at
    found = kill_resume.problems(result)
    assert any("resumed from step None, the newest complete checkpoint was step" in p for p in found), found


def test_check_passes_real_resumes(kill_resume, tmp_path):
    result = kill_resume.trial(tmp_path, 2, spec_dict=short_spec(kill_resume), log=lambda line: None)
    assert kill_resume.problems(result) == []
    assert any(e["resumed"] for e in result["launches"][1:])


def test_check_fails_without_rows(kill_resume):
    launch = {"kill": "at a random moment", "expected": None, "resumed": None, "rows": 0, "rows_match": False,
              "returncode": -9, "log": ""}
    final = {**launch, "kill": None, "returncode": 0}
    result = {"launches": [launch, final], "reference_rows": 0, "final_rows": 0, "curve_identical": False,
              "weights_identical": True}
    assert "launch 1 logged no rows before its kill" in kill_resume.problems(result)
