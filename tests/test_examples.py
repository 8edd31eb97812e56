"""The shipped examples: their data is what their generators write, and they run end to end."""

import json
import subprocess
import sys
from pathlib import Path

from tailor.run import Pipeline, read_run
from tailor.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_QA = ROOT / "examples" / "product-qa"


def test_product_qa_data_is_reproducible():
    res = subprocess.run([sys.executable, str(PRODUCT_QA / "generate.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_product_qa_test_wordings_are_unseen_in_training():
    train = [json.loads(line) for line in (PRODUCT_QA / "data" / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (PRODUCT_QA / "data" / "test.jsonl").read_text().splitlines()]
    seen = {r["question"] for r in train}
    assert test and not [r for r in test if r["question"] in seen]
    facts = {(r["product"], r["attribute"]) for r in train}
    assert {(r["product"], r["attribute"]) for r in test} == facts  # every fact is asked in both


def test_product_qa_spec_runs_end_to_end_on_a_small_budget(tmp_path):
    spec = load_spec(PRODUCT_QA / "spec.yaml")
    spec.train.max_steps = 15
    spec.train.eval_every = 15
    spec.evaluate.max_examples = 20
    run_dir = Pipeline(spec, tmp_path / "runs").run()
    info = read_run(run_dir)
    assert info["status"] == "complete" and info["targets"]["total"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/exact_match"] <= 1.0 and metrics["test/examples"] == 20
