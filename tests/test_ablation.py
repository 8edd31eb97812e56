"""Ablation studies: key overrides, and a tiny study of the product-qa example run end to end."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tailor.cli import app
from tailor.errors import TailorError
from tailor.report import results_path
from tailor.studies.ablation import run_ablation, set_key, variant_spec
from tailor.run import read_run
from tailor.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_QA = ROOT / "examples" / "product-qa"

TINY = {"tokenizer": {"type": "bpe", "vocab_size": 320},
        "model": {"base": "scratch", "arch": {"family": "transformer", "n_layer": 1, "n_head": 2, "n_embd": 32}},
        "train": {"max_steps": 8, "batch_size": 16, "eval_every": 8, "eval_batches": 1,
                  "schedule": {"warmup_steps": 2}},
        "evaluate": {"splits": ["test"], "generation": {"max_new_tokens": 6}, "max_examples": 6,
                     "bootstrap": {"samples": 100}, "error_analysis": {"clusters": 2},
                     "ablation": {"seeds": 2, "metrics": ["test/exact_match", "test/loss"],
                                  "variants": [{"model.arch.n_layer": 2}, {"name": "no-dedup", "data.clean.dedup": "off"}]}}}


def test_set_key_follows_dotted_paths_and_named_steps():
    raw = {"model": {"arch": {"n_layer": 4}}, "data": {"clean": [{"normalize": {"unicode": "NFKC"}}, {"dedup": {}}]}}
    set_key(raw, "model.arch.n_layer", 2, "v")
    set_key(raw, "data.clean.normalize.unicode", "NFC", "v")
    set_key(raw, "data.clean.dedup", False, "v")  # YAML's `off`
    assert raw == {"model": {"arch": {"n_layer": 2}}, "data": {"clean": [{"normalize": {"unicode": "NFC"}}]}}
    with pytest.raises(TailorError, match="no 'dedup' step to turn off"):
        set_key(raw, "data.clean.dedup", "off", "v")


def test_variant_errors_name_the_variant_and_key():
    spec = load_spec(PRODUCT_QA / "spec.yaml")
    with pytest.raises(TailorError, match=r"variants \(x\).*model.layers: unknown key"):
        variant_spec(spec, {"model.layers": 2}, 0, "evaluate.ablation.variants (x)")
    with pytest.raises(TailorError, match=r"model.arch.n_head: Input should be a valid integer"):
        variant_spec(spec, {"model.arch.n_head": "many"}, 0, "v")
    shifted = variant_spec(spec, {"model.arch.dropout": 0.1}, 1, "v")
    assert shifted.train.seed == spec.train.seed + 1 and shifted.model.arch.dropout == 0.1
    assert shifted.evaluate.ablation.variants == []


def test_budget_keys_cannot_vary(tmp_path):
    raw = yaml.safe_load((PRODUCT_QA / "spec.yaml").read_text())
    raw["evaluate"]["ablation"] = {"variants": [{"train.max_steps": 10}]}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(TailorError, match="'train.max_steps' is the budget"):
        load_spec(path)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablation")
    raw = yaml.safe_load((PRODUCT_QA / "spec.yaml").read_text())
    raw.update({k: v for k, v in TINY.items() if k != "evaluate"})
    raw["evaluate"] = TINY["evaluate"]
    raw["data"]["sources"] = [{**s, "rows": [str(PRODUCT_QA / r) for r in s["rows"]]} for s in raw["data"]["sources"]]
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    spec = load_spec(path)
    result, run_dir = run_ablation(spec, root / "runs")
    return spec, root, result, run_dir


def test_ablation_runs_every_arm_and_seed(tiny_study):
    spec, root, result, run_dir = tiny_study
    assert [v["name"] for v in result["variants"]] == ["baseline", "model.arch.n_layer=2", "no-dedup"]
    assert result["metrics"] == ["test/exact_match", "test/loss"]
    for v in result["variants"]:
        assert len(v["runs"]) == 2 and len(v["per_seed"]["test/loss"]) == 2
        for r in v["runs"]:
            assert read_run(Path(r))["status"] == "complete"
    layers = result["variants"][1]
    d = layers["deltas"]["test/loss"]
    assert d["low"] <= d["delta"] <= d["high"]
    assert d["delta"] == pytest.approx(layers["values"]["test/loss"] - result["variants"][0]["values"]["test/loss"])
    # the no-dedup arm has its own data stage; the layers arm reuses the baseline's data
    nodedup = json.loads((Path(result["variants"][2]["runs"][0]) / "data" / "report.json").read_text())
    assert [s["step"] for s in nodedup["steps"]] == ["normalize"]
    layers_run = read_run(Path(layers["runs"][0]))
    assert layers_run["stages"]["data"]["status"] == "reused"


def test_ablation_results_reach_the_report(tiny_study):
    spec, root, result, run_dir = tiny_study
    path = results_path(run_dir.parent, spec)
    assert path.is_file() and path.with_suffix(".png").is_file() and path.with_suffix(".html").is_file()
    page = (run_dir / "report.html").read_text()
    assert "<h2>Ablation</h2>" in page and "no-dedup" in page and "Δ test/loss" in page
    assert read_run(run_dir)["stages"]["train"]["status"] in ("reused", "skipped")  # the baseline's own run


def test_ablation_again_is_cached_resumes_and_the_cli_prints_the_table(tiny_study):
    spec, root, result, run_dir = tiny_study
    broken = Path(result["variants"][2]["runs"][1])  # as if killed during its report stage
    shutil.rmtree(broken / "report")
    info = read_run(broken)
    info["status"] = "failed"
    (broken / "run.json").write_text(json.dumps(info))
    res = CliRunner().invoke(app, ["ablate", str(root / "spec.yaml"), "--runs-dir", str(root / "runs")])
    assert res.exit_code == 0, res.output
    assert "Δ test/loss" in res.output.replace("\n", "") and "results:" in res.output
    again = json.loads(results_path(run_dir.parent, spec).read_text())
    assert again["variants"] == result["variants"]  # same run folders, same numbers
    for v in again["variants"]:
        for r in v["runs"]:
            stages = {k: s["status"] for k, s in read_run(Path(r))["stages"].items()}
            if Path(r) == broken:  # continued in place: only the missing stage ran
                assert stages.pop("report") == "done" and read_run(broken)["status"] == "complete"
            assert set(stages.values()) == {"skipped"}, (r, stages)


def test_ablate_without_variants_is_a_clear_error(make_spec, tmp_path):
    res = CliRunner().invoke(app, ["ablate", str(make_spec()), "--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code != 0 and "evaluate.ablation.variants" in str(res.exception)
