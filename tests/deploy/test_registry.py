"""The registry: versions, promotion, rollback, a hot swap under traffic, and retraining that only improves."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tailor.cli import app as cli
from tailor.deploy.auth import KeyStore
from tailor.deploy.feedback import FeedbackStore
from tailor.deploy.registry import Registry
from tailor.deploy.retrain import retrain
from tailor.deploy.server import create_app
from tailor.errors import TailorError
from tailor.inference import Generator

from .conftest import make_model_folder, running


@pytest.fixture(scope="module")
def two_models(finished_run, tmp_path_factory):
    _, run_dir = finished_run
    root = tmp_path_factory.mktemp("two")
    tok = run_dir / "train" / "model"
    return make_model_folder(root / "m1", tok, seed=1), make_model_folder(root / "m2", tok, seed=2)


def test_versions_promotion_and_rollback_from_the_cli(two_models, tmp_path):
    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    for folder in two_models:
        res = runner.invoke(cli, ["registry", "add", str(folder), "--name", "qa", *home])
        assert res.exit_code == 0, res.output
    registry = Registry(tmp_path / "registry")
    assert [v.version for v in registry.list("qa")] == [1, 2] and registry.champion("qa") is None
    assert (registry.get("qa", 1).path / "manifest.json").is_file()
    assert runner.invoke(cli, ["registry", "promote", "qa", "1", *home]).exit_code == 0
    assert runner.invoke(cli, ["registry", "promote", "qa", "2", *home]).exit_code == 0
    listed = runner.invoke(cli, ["registry", "list", *home]).stdout
    assert "qa:v1" in listed and "qa:v2" in listed
    assert runner.invoke(cli, ["registry", "rollback", "qa", *home]).stdout.strip() == "champion: qa:v1"
    assert registry.champion("qa").version == 1 and registry.promotions("qa")[-1]["reason"] == "rollback from v2"
    with pytest.raises(TailorError, match="does not exist"):
        registry.promote("qa", 9)
    with pytest.raises(TailorError, match="no champion"):
        registry.rollback("other")


def test_promotion_swaps_the_served_model_under_traffic_without_dropping_requests(two_models, tmp_path):
    registry = Registry(tmp_path / "registry")
    for folder in two_models:
        registry.add(folder, "qa")
    registry.promote("qa", 1)
    expected = {f"qa:v{i + 1}": Generator(f).complete("item 4 colour?", 8).text for i, f in enumerate(two_models)}
    assert len(set(expected.values())) == 2
    headers = {"Authorization": f"Bearer {KeyStore(tmp_path / 'keys.db').create('t', ['infer'])[1]}"}
    answers: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def traffic(url):
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                res = client.post(f"{url}/v1/completions", headers=headers,
                                  json={"prompt": "item 4 colour?", "max_tokens": 8, "temperature": 0})
                body = res.json()
                answers.append((res.status_code, body.get("system_fingerprint"), body["choices"][0]["text"]))

    with running(create_app("registry:qa", home=tmp_path, registry_poll=0.2)) as url:
        threads = [threading.Thread(target=traffic, args=(url,)) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        registry.promote("qa", 2)
        deadline = time.time() + 20
        while not any(a[1] == "qa:v2" for a in answers[-4:]) and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        ready = httpx.get(f"{url}/ready").json()
    assert ready["model"] == "qa:v2"
    assert {a[0] for a in answers} == {200} and {a[1] for a in answers} == {"qa:v1", "qa:v2"}
    assert all(text == expected[version] for _, version, text in answers)  # each answer from one whole model
    first_v2 = next(i for i, a in enumerate(answers) if a[1] == "qa:v2")
    assert all(a[1] == "qa:v2" for a in answers[first_v2 + 8:])


def test_retrain_promotes_a_better_challenger_and_refuses_a_worse_one(make_spec, tmp_path):
    home, runs = tmp_path / "home", tmp_path / "runs"

    def spec(steps: int, margin: float = 0.0):
        return make_spec({"train": {"max_steps": steps}, "deploy": {"retrain": {"metric": "loss", "margin": margin}}},
                         name=f"spec-{steps}.yaml")

    first = retrain(spec(2), runs, home)
    assert first["promoted"] and first["reason"] == "no champion yet"
    FeedbackStore(home / "feedback.db").add("cmpl-1", False, None, "violet", "what colour is item 99", "v1", "k")
    better = retrain(spec(40), runs, home)
    assert better["promoted"] and better["challenger_value"] < better["champion_value"]
    registry = Registry(home / "registry")
    champion = registry.champion("tiny")
    assert champion.version == better["challenger"] and champion.lineage["feedback_corrections"] == 1
    assert champion.lineage["parent"] == first["challenger"]
    train = pq.read_table(f"{better['run']}/data/train.parquet").to_pylist()
    assert {"question": "what colour is item 99", "answer": "violet"}.items() <= \
        next(r for r in train if r["question"] == "what colour is item 99").items()

    worse = retrain(spec(3), runs, home)
    assert not worse["promoted"] and "not better" in worse["reason"]
    assert registry.champion("tiny").version == better["challenger"]
    decisions = registry.decisions("tiny")
    assert [d["promoted"] for d in decisions] == [1, 1, 0] and "challenger" in decisions[-1]["reason"]

    runner = CliRunner()  # a margin nothing beats: the scheduled form records a refusal too
    res = runner.invoke(cli, ["retrain", str(spec(40, margin=100.0)), "--every", "1s", "--rounds", "1",
                              "--runs-dir", str(runs), "--home", str(home)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["promoted"] is False and "margin 100" in registry.decisions("tiny")[-1]["reason"]
