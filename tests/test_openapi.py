"""``/openapi.json`` is complete and true: every route walked."""

from __future__ import annotations

import json

import pytest
from test_api import api  # noqa: F401  (fixture)

JSON_BODIES = {
    ("post", "/v1/tenants/{tenant_id}/messages"): "CallMessage",
    ("post", "/v1/tenants/{tenant_id}/appointments"): "BookingBody",
    ("patch", "/v1/tenants/{tenant_id}/appointments/{appointment_id}"): "ChangeBody",
    ("post", "/v1/tenants/{tenant_id}/rules/explain"): "ExplainRequest",
}


@pytest.fixture
def spec(api):
    answer = api.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def operations(spec):
    for path, ops in spec["paths"].items():
        for method, operation in ops.items():
            yield method, path, operation


def resolve(spec, ref: str) -> dict:
    node = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_reference_resolves_and_no_default_validation_shape(spec):
    text = json.dumps(spec)
    assert "HTTPValidationError" not in text
    for ref in set(__import__("re").findall(r'"\$ref": "([^"]+)"', text)):
        assert resolve(spec, ref), ref


def test_request_bodies(spec):
    for (method, path), model in JSON_BODIES.items():
        body = spec["paths"][path][method]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}
    message = spec["components"]["schemas"]["CallMessage"]
    assert {"call_type", "caller", "subject", "taken_by", "taken_at"} <= set(message["required"])
    assert "staff_id" in spec["components"]["schemas"]["BookingBody"]["properties"]
    config = spec["paths"]["/v1/tenants/{tenant_id}/config"]["put"]["requestBody"]
    assert "application/yaml" in config["content"]


def test_errors_have_relais_shape_and_bearer_is_declared(spec):
    bearer = spec["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    error = spec["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
        assert not [p for p in operation.get("parameters", []) if p["name"] == "authorization"]


def test_every_route_needing_a_key_says_so_and_refuses_without_one(api, spec):
    secured = 0
    for method, path, operation in operations(spec):
        url = path.format(tenant_id="acme", message_id="m", appointment_id="a",
                          delivery_id="d", name="hook", token="t", version="1",
                          provider="salesforce")
        answer = api.request(method.upper(), url, content=b"{}",
                             headers={"Content-Type": "application/json"})
        if "security" in operation:
            secured += 1
            assert operation["security"] == [{"bearerAuth": []}]
            assert {"401", "403", "404"} <= set(operation["responses"]), (method, path)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "unauthenticated"
        else:
            assert answer.status_code != 401 or path.startswith("/v1/webhooks/"), (method, path)
        assert str(answer.status_code) in operation["responses"], (method, path, answer.text)
    assert secured >= 15


def test_conflict_and_unavailable_are_documented_where_they_happen(spec):
    post = spec["paths"]["/v1/tenants/{tenant_id}/appointments"]["post"]["responses"]
    assert {"409", "503"} <= set(post)
    assert "503" in spec["paths"]["/healthz"]["get"]["responses"]
    replay = spec["paths"]["/v1/deliveries/{delivery_id}/replay"]["post"]["responses"]
    assert "409" in replay
