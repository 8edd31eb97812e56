"""Managed-platform container contracts: SageMaker, Vertex AI and Azure ML routes and ports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tailor.deploy.cloud import platform_port
from tailor.deploy.server import create_app
from tailor.inference import Generator
from tailor.spec.deploy import Serve

from .conftest import running


def test_sagemaker_ping_and_invocations(chatty_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "8080")
    expected = [Generator(chatty_model).complete(p, 6).text for p in ("item 1 colour?", "x")]
    with running(create_app(chatty_model, Serve(platform="sagemaker"), home=tmp_path)) as url:
        assert httpx.get(f"{url}/ping").json()["status"] == "ok"
        res = httpx.post(f"{url}/invocations", json={"inputs": ["item 1 colour?", "x"],
                                                     "parameters": {"max_new_tokens": 6}})
        assert res.status_code == 200
        assert [p["generated_text"] for p in res.json()["predictions"]] == expected
        assert httpx.post(f"{url}/invocations", json={"inputs": "x", "instances": ["x"]}).status_code == 422
        assert httpx.post(f"{url}/invocations", json={"inputs": "x", "parameters": {"beams": 4}}).status_code == 422
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "x"}).status_code == 401  # still keyed
    assert platform_port("sagemaker") == 8080


def test_vertex_routes_and_port_come_from_the_environment(chatty_model, tmp_path, monkeypatch):
    monkeypatch.setenv("AIP_HEALTH_ROUTE", "/v1/endpoints/123/health")
    monkeypatch.setenv("AIP_PREDICT_ROUTE", "/v1/endpoints/123:predict")
    monkeypatch.setenv("AIP_HTTP_PORT", "7080")
    assert platform_port("vertex") == 7080
    expected = Generator(chatty_model).complete("item 2 colour?", 5).text
    with running(create_app(chatty_model, Serve(platform="vertex"), home=tmp_path)) as url:
        assert httpx.get(f"{url}/v1/endpoints/123/health").status_code == 200
        res = httpx.post(f"{url}/v1/endpoints/123:predict",
                         json={"instances": [{"prompt": "item 2 colour?"}], "parameters": {"max_new_tokens": 5}})
        assert res.json()["predictions"][0]["generated_text"] == expected


def test_azure_scoring_route(chatty_model, tmp_path, monkeypatch):
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(chatty_model))
    with running(create_app(chatty_model, Serve(platform="azure"), home=tmp_path)) as url:
        assert httpx.get(f"{url}/").status_code == 200 and httpx.get(f"{url}/ready").status_code == 200
        res = httpx.post(f"{url}/score", json={"inputs": "x", "parameters": {"max_new_tokens": 3}})
        assert res.status_code == 200 and res.json()["predictions"][0]["finish_reason"] == "length"
    assert platform_port("azure") == 5001


def test_platform_routes_do_not_exist_without_the_platform(served_chatty):
    assert httpx.post(f"{served_chatty.url}/invocations", json={"inputs": "x"}).status_code in (401, 404)
    assert httpx.get(f"{served_chatty.url}/ping").status_code in (401, 404)


def test_the_serve_command_names_a_wrong_platform_without_a_traceback(chatty_model, tmp_path):
    res = subprocess.run([sys.executable, "-m", "tailor.cli", "serve", str(chatty_model), "--platform", "heroku",
                          "--home", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--platform: Input should be 'none', 'sagemaker', 'vertex' or 'azure'" in res.stderr


@pytest.mark.parametrize("env,expected", [
    ({"AIP_HTTP_PORT": "8080"}, "serve /model --platform vertex"),
    ({"AZUREML_MODEL_DIR": "/var/azureml-app/m"}, "serve /var/azureml-app/m --platform azure"),
    ({"TAILOR_MODEL": "/srv/m"}, "serve /srv/m --host 0.0.0.0 --port 8000"),
], ids=["vertex", "azure", "plain"])
def test_the_container_entrypoint_picks_the_platform_from_its_environment(tmp_path, env, expected):
    stub = tmp_path / "tailor"
    stub.write_text('#!/bin/sh\necho "$@"\n')
    stub.chmod(0o755)
    entry = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.sh"
    run = {"PATH": f"{tmp_path}:/usr/bin:/bin", **env}
    assert subprocess.run([str(entry), "serve"], env=run, capture_output=True, text=True).stdout.strip() == expected
    assert subprocess.run([str(entry), "keys", "list"], env=run, capture_output=True, text=True).stdout.strip() == \
        "keys list"
