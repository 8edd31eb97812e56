"""Schemathesis drives every operation of the OpenAPI schema with generated requests: never a 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from tailor.deploy.server import create_app
from tailor.spec.deploy import Serve

from .conftest import running


def test_generated_requests_never_get_a_server_error(chatty_model, home, keys, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "8080")
    serve = Serve(platform="sagemaker", docs=True)  # the platform routes are part of the schema too
    with running(create_app(chatty_model, serve, home=home)) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers={"Authorization": f"Bearer {keys['infer']}"})
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/completions", "/v1/chat/completions", "/v1/feedback",
                                                  "/invocations", "/metrics", "/health"}
        seen: dict[int, int] = {}
        for operation in operations:
            @given(case=operation.as_strategy())
            @settings(max_examples=30, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
            def no_5xx(case):
                for key in (keys["admin"], None):
                    response = case.call(headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)
                    seen[response.status_code] = seen.get(response.status_code, 0) + 1
                    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])

            no_5xx()
    assert seen.get(200, 0) > 20 and seen.get(422, 0) > 10 and seen.get(401, 0) > 20, seen  # it reached the handlers
