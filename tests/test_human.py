"""Human evaluation: blind A/B studies in SQLite, agreement statistics against textbook examples,
Label Studio and CSV exchange, and the rating page driven in headless Chromium."""

import csv
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tailor.cli import app
from tailor.errors import TailorError
from tailor.evaluate.human.exchange import export_csv, export_labelstudio, import_csv, import_labelstudio
from tailor.evaluate.human.results import cohen_kappa, krippendorff_alpha, study_results
from tailor.evaluate.human.store import connect, create_study, items, ratings, save_ratings
from tailor.evaluate.predictions import write_predictions

GOOD, BAD = "18 V", "12 V"


def fake_run(folder: Path, answer: str, n: int = 30) -> Path:
    """A run folder holding only evaluate/predictions.parquet, answering every question the same way."""
    rows = [{"split": "test", "index": i, "input": f"what is the voltage of drill {i}?", "expected": GOOD,
             "predicted": answer, "correct": answer == GOOD} for i in range(n)]
    (folder / "evaluate").mkdir(parents=True)
    write_predictions(folder / "evaluate" / "predictions.parquet", rows)
    return folder


@pytest.fixture
def runs(tmp_path):
    return fake_run(tmp_path / "good", GOOD), fake_run(tmp_path / "bad", BAD)


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", example C: 4 observers, 12 units.
KRIPP = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
         [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]


def test_krippendorff_alpha_textbook_example():
    units = {j: {f"r{i}": KRIPP[i][j] for i in range(4) if KRIPP[i][j] is not None} for j in range(12)}
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)
    assert np.isnan(krippendorff_alpha({0: {"a": 3}, 1: {"b": 4}}, "ordinal"))  # no unit rated twice: undefined


def test_cohen_kappa_textbook_example():
    # 50 proposals: both yes 20, A yes/B no 5, A no/B yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert np.isnan(cohen_kappa(["yes"], ["yes"]))


def test_ab_study_is_blind_with_randomised_sides(tmp_path, runs):
    good, bad = runs
    with connect(tmp_path / "h.sqlite") as con:
        study = create_study(con, "ab", good, bad, n=30, criteria=("fluency",), seed=3)
        shown = items(con, "ab")
    assert study.questions() == ["fluency:a", "fluency:b", "winner"]
    swapped = sum(i.swapped for i in shown)
    assert 5 < swapped < 25  # a fair coin per item
    assert all((i.shown_a == BAD) == i.swapped for i in shown)
    with connect(tmp_path / "h.sqlite") as con:
        again = create_study(con, "ab2", good, bad, n=30, criteria=("fluency",), seed=3)
        assert [i.swapped for i in items(con, "ab2")] == [i.swapped for i in shown] and again.kind == "ab"
        with pytest.raises(TailorError, match="study 'ab' exists"):
            create_study(con, "ab", good, bad)
        with pytest.raises(TailorError, match="no generated answers on split 'validation'"):
            create_study(con, "v", good, split="validation")


def test_results_means_win_rate_and_agreement(tmp_path, runs):
    good, bad = runs
    with connect(tmp_path / "h.sqlite") as con:
        study = create_study(con, "ab", good, bad, n=20, criteria=("relevance",), seed=0)
        for k, item in enumerate(items(con, "ab")):
            for rater, noise in (("ann", 0), ("bob", k % 5 == 0)):  # bob disagrees on every fifth item
                winner = "b" if noise else "a"
                save_ratings(con, study, item.id, rater,
                             {"relevance:a": "5" if not noise else "2", "relevance:b": "1", "winner": winner}, "test", "t")
        res = study_results(con, "ab")
        rows = ratings(con, "ab")
    winner = res["winner"]
    assert winner["counts"] == {"a": 36, "b": 4, "tie": 0} and winner["win_rate_a"] == pytest.approx(0.9)
    low, high = winner["interval_a"]
    assert low < 0.9 < high <= 1.0
    ann = [r["value"] for r in rows if r["rater"] == "ann" and r["question"] == "winner"]
    bob = [r["value"] for r in rows if r["rater"] == "bob" and r["question"] == "winner"]
    assert winner["kappa"] == pytest.approx(cohen_kappa(ann, bob)) and winner["raters"] == 2
    rel_a = next(s for s in res["scores"] if s["side"] == "a")
    assert rel_a["mean"] == pytest.approx((20 * 5 + 16 * 5 + 4 * 2) / 40) and rel_a["ratings"] == 40
    assert rel_a["interval"][0] < rel_a["mean"] < rel_a["interval"][1]
    json.dumps(res, allow_nan=False)  # an undefined statistic is None, never NaN


def test_label_studio_round_trip_maps_sides_back_to_runs(tmp_path, runs):
    good, bad = runs
    db = tmp_path / "h.sqlite"
    with connect(db) as con:
        create_study(con, "ab", good, bad, n=10, criteria=("fluency",), seed=1)
        tasks_path, config_path = export_labelstudio(con, "ab", tmp_path / "tasks.json")
    config = config_path.read_text()
    assert '<Rating name="fluency_A" toName="response_A"' in config and '<Choice value="tie"/>' in config
    tasks = json.loads(tasks_path.read_text())
    assert len(tasks) == 10 and set(tasks[0]["data"]) == {"item", "prompt", "reference", "response_A", "response_B"}
    # Label Studio's export: each task with its annotations; the rater always prefers the correct answer
    for n, task in enumerate(tasks):
        best = "A" if task["data"]["response_A"] == GOOD else "B"
        other = "B" if best == "A" else "A"
        task["id"] = n + 1
        task["annotations"] = [{"id": 100 + n, "completed_by": 7, "was_cancelled": False, "result": [
            {"from_name": f"fluency_{best}", "to_name": f"response_{best}", "type": "rating", "value": {"rating": 5}},
            {"from_name": f"fluency_{other}", "to_name": f"response_{other}", "type": "rating", "value": {"rating": 2}},
            {"from_name": "winner", "to_name": "prompt", "type": "choices", "value": {"choices": [best]}}]},
            {"id": 200 + n, "completed_by": {"email": "x@example.org"}, "was_cancelled": True, "result": []}]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    with connect(db) as con:
        counts = import_labelstudio(con, "ab", export)
        res = study_results(con, "ab")
    assert counts == {"ratings": 30, "cancelled_annotations": 10}
    assert res["winner"]["counts"]["a"] == 10 and res["winner"]["win_rate_a"] == 1.0
    assert {s["side"]: s["mean"] for s in res["scores"]} == {"a": 5.0, "b": 2.0}
    tasks[0]["data"]["item"] = 9999
    export.write_text(json.dumps(tasks))
    with connect(db) as con, pytest.raises(TailorError, match=r"task 0: data.item 9999 is not an item"):
        import_labelstudio(con, "ab", export)


def test_csv_round_trip_and_errors(tmp_path, runs):
    good, _ = runs
    db = tmp_path / "h.sqlite"
    with connect(db) as con:
        create_study(con, "one", good, n=4, criteria=("fluency", "relevance"))
        path = export_csv(con, "one", tmp_path / "sheet.csv")
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["item", "prompt", "reference", "response_A", "rater", "fluency", "relevance"]
    for r in rows[:3]:
        r.update(rater="cara", fluency="4", relevance="5")
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with connect(db) as con:
        assert import_csv(con, "one", path) == {"ratings": 6, "blank_rows": 1}
    rows[3].update(rater="cara", fluency="9", relevance="1")
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with connect(db) as con, pytest.raises(TailorError, match=r"sheet.csv:5: fluency '9': expected a score from 1 to 5"):
        import_csv(con, "one", path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rating_server(tmp_path, runs):
    good, bad = runs
    db = tmp_path / "h.sqlite"
    res = CliRunner().invoke(app, ["human", "create", "ab", str(good), "--vs", str(bad), "--n", "3",
                                   "--criteria", "fluency", "--db", str(db)])
    assert res.exit_code == 0, res.output
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tailor.cli", "human", "serve", "--db", str(db), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(url).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read().decode() if proc.poll() else "timeout"
        time.sleep(0.2)
    yield url, db, good, bad
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def browser(tmp_path):
    from conftest import need_system

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    need_system(bool(chromium and chromedriver), "Debian's chromium and chromium-driver", "chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(15)  # a click that navigates may return before the next page's elements exist
    yield driver
    driver.quit()


def test_rating_page_in_headless_chromium(rating_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, db, good, bad = rating_server
    browser.get(f"{url}/")
    browser.find_element(By.LINK_TEXT, "ab").click()
    browser.find_element(By.ID, "rater").send_keys("dana")
    browser.find_element(By.ID, "start").click()
    for _ in range(3):
        page = browser.page_source
        assert str(good) not in page and str(bad) not in page  # blind: no run names on the page
        best = "A" if browser.find_element(By.ID, "response-A").text == GOOD else "B"
        other = "B" if best == "A" else "A"
        browser.find_element(By.ID, f"fluency_{best}-5").click()
        browser.find_element(By.ID, f"fluency_{other}-2").click()
        browser.find_element(By.ID, f"winner-{best}").click()
        before = browser.current_url
        browser.find_element(By.ID, "submit").click()
        # the next item (or the closing page) has its own address; wait until it has loaded. (Waiting for the old
        # button to go stale races chromedriver, which may report a node of the old document as an unknown error.)
        WebDriverWait(browser, 20).until(
            lambda d: d.current_url != before and d.execute_script("return document.readyState") == "complete")
    assert "Thank you, dana" in browser.find_element(By.ID, "done").text
    with connect(db) as con:
        res = study_results(con, "ab")
    assert res["winner"]["counts"] == {"a": 3, "b": 0, "tie": 0}
    assert {s["side"]: s["mean"] for s in res["scores"]} == {"a": 5.0, "b": 2.0}
    browser.get(f"{url}/studies/ab/results")
    assert "win rate of a" in browser.page_source


def test_rating_page_rejects_incomplete_answers(rating_server):
    url, db, _, _ = rating_server
    with connect(db) as con:
        first = items(con, "ab")[0]
    r = httpx.post(f"{url}/studies/ab/items/{first.id}", data={"rater": "eve", "fluency_A": "3"})
    assert r.status_code == 400 and "missing: fluency_B, winner" in r.text
    r = httpx.post(f"{url}/studies/ab/items/{first.id}", data={"rater": "", "fluency_A": "3", "fluency_B": "3",
                                                               "winner": "tie"})
    assert r.status_code == 400 and "rater" in r.text
    assert httpx.get(f"{url}/studies/nope").status_code == 400
    assert httpx.get(f"{url}/studies/ab/results", params={"format": "json"}).json()["ratings"] == 0


def test_human_cli_export_import_results(tmp_path, runs):
    good, bad = runs
    db = str(tmp_path / "h.sqlite")
    cli = CliRunner()
    assert cli.invoke(app, ["human", "create", "one", str(good), "--n", "2", "--criteria", "fluency", "--db", db]).exit_code == 0
    res = cli.invoke(app, ["human", "list", "--db", db])
    assert "one" in res.output and "rate" in res.output
    sheet = tmp_path / "one.csv"
    assert cli.invoke(app, ["human", "export", "one", str(sheet), "--db", db]).exit_code == 0
    lines = sheet.read_text().splitlines()
    lines[1] = lines[1].rstrip(",") + ",fay,4"
    sheet.write_text("\n".join(lines) + "\n")
    res = cli.invoke(app, ["human", "import", "one", str(sheet), "--db", db])
    assert res.exit_code == 0 and "ratings: 1" in res.output and "blank rows: 1" in res.output
    res = cli.invoke(app, ["human", "results", "one", "--json", "--db", db])
    assert json.loads(res.output)["scores"][0]["mean"] == 4.0
    res = cli.invoke(app, ["human", "export", "one", str(tmp_path / "x.txt"), "--db", db])
    assert res.exit_code != 0 and "expected a .json (Label Studio) or .csv" in str(res.exception)
