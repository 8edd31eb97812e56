"""Tailor → Label Studio → Tailor against a real Label Studio server on 127.0.0.1.

Label Studio pins older numpy and pyarrow than Tailor, so it usually lives in an environment of its own:
the test runs the `label-studio` found in TAILOR_LABEL_STUDIO, beside this Python, or on PATH
(`pip install label-studio`, the `labelstudio` extra), and is skipped, saying so, where there is none.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from conftest import missing
from test_data import run, spec_for

TICKETS = [{"body": f"ticket {i}: my parcel is late, order {1000 + i}", "intent": "shipping" if i % 2 else "refund",
            "source": "email" if i % 3 else "phone"} for i in range(12)]
FLIP = {"refund": "shipping", "shipping": "refund"}


def _label_studio() -> str | None:
    beside = Path(sys.executable).parent / "label-studio"
    for candidate in (os.environ.get("TAILOR_LABEL_STUDIO"), str(beside) if beside.is_file() else None,
                      shutil.which("label-studio")):
        if candidate:
            return candidate
    return None


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """(base URL, API client) of a fresh Label Studio on a free loopback port, for the whole module."""
    from deploy.conftest import free_port

    exe = _label_studio()
    if exe is None:  # make test installs it into .venv-label-studio; in CI (.ci/run) a missing one fails
        missing("label-studio is not installed: make test installs it into .venv-label-studio (or pip install "
                "label-studio in an environment of its own and set TAILOR_LABEL_STUDIO to its label-studio)")
    data, port, token = tmp_path_factory.mktemp("label-studio"), free_port(), secrets.token_hex(20)
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "DJANGO_DB": "sqlite"}
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen([exe, "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
                             "--data-dir", str(data), "--username", "tests@example.com", "--password",
                             secrets.token_hex(12), "--user-token", token, "--enable-legacy-api-token"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 240  # the first start runs Label Studio's database migrations
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise AssertionError("Label Studio did not start:\n" + (data / "server.log").read_text()[-3000:])
            time.sleep(1)
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=60) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_tasks_and_config_round_trip_through_label_studio(label_studio, tmp_path):
    client = label_studio
    (tmp_path / "tickets.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TICKETS))
    _, out = run(tmp_path, spec_for(tmp_path, "[{type: files, path: tickets.jsonl, map: {text: body}}]",
                                    "{input: text, output: intent}",
                                    "  label_studio: true\n  split: {train: 1, validation: 0, test: 0}\n"))

    project = client.post("/api/projects/", json={"title": "tailor round trip",
                                                  "label_config": (out / "label_studio_config.xml").read_text()})
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    imported = client.post(f"/api/projects/{pid}/import", json=json.loads((out / "label_studio.json").read_text()))
    assert imported.status_code == 201, imported.text
    assert imported.json()["task_count"] == len(TICKETS) and imported.json()["prediction_count"] == len(TICKETS)

    tasks = client.get("/api/tasks/", params={"project": pid, "page_size": 100, "fields": "all"}).json()["tasks"]
    assert len(tasks) == len(TICKETS)
    expected = {}
    for i, task in enumerate(tasks):  # an annotator keeps half the suggestions and corrects the other half
        suggested = task["predictions"][0]["result"][0]["value"]["choices"][0]
        label = FLIP[suggested] if i % 2 else suggested
        expected[task["data"]["text"]] = label
        made = client.post(f"/api/tasks/{task['id']}/annotations/", json={"result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]})
        assert made.status_code == 201, made.text
    exported = client.get(f"/api/projects/{pid}/export", params={"exportType": "JSON"})
    assert exported.status_code == 200, exported.text
    (tmp_path / "back").mkdir()
    (tmp_path / "back" / "export.json").write_bytes(exported.content)

    report, back = run(tmp_path / "back", spec_for(tmp_path / "back", "[{type: files, path: export.json, "
                                                   "format: label_studio}]", "{input: text, output: intent}"))
    rows = [r for split in ("train", "validation", "test")
            for r in pd.read_parquet(back / f"{split}.parquet").to_dict("records")]
    assert report["loaded"] == len(TICKETS) and len(rows) == len(TICKETS)
    assert {r["text"]: r["intent"] for r in rows} == expected
    assert sum(expected[t["body"]] != t["intent"] for t in TICKETS) == len(TICKETS) // 2
    originals = {t["body"]: t["source"] for t in TICKETS}
    assert all(r["source"] == originals[r["text"]] for r in rows)  # the user's own field, untouched
    assert all(r["_tailor_source"].startswith(str(tmp_path / "back" / "export.json")) for r in rows)
    assert all(r["_tailor_label_studio_id"] in {t["id"] for t in tasks} for r in rows)
