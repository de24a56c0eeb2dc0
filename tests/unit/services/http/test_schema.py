"""/schema documents every body: built from ``create_app`` without starting it (no lifespan, no servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import keyledger.services.http as http_package
from keyledger.services.config import Settings
from keyledger.services.http.app import create_app
from keyledger.services.http.deps import dependencies

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
GUARDED = {401, 403, 429, 503}  # 503: the database is unreachable (the guard leases rate budget)
ERRORS = {  # what each operation can answer besides success: the error body, always
    ("POST", "/v1/keys"): GUARDED | {400, 409, 413},
    ("GET", "/v1/keys"): GUARDED | {400},
    ("POST", "/v1/keys/import"): GUARDED | {400, 413},
    ("GET", "/v1/keys/{key_id}"): GUARDED | {400, 404},
    ("PATCH", "/v1/keys/{key_id}"): GUARDED | {400, 404, 409, 413},
    ("POST", "/v1/keys/{key_id}/rotate"): GUARDED | {400, 404, 409, 413},
    ("POST", "/v1/keys/{key_id}/revoke"): GUARDED | {400, 404, 409, 413},
    ("POST", "/v1/keys/bulk"): GUARDED | {400, 404, 413},
    ("POST", "/v1/verify"): {400, 401, 413, 429, 503},
    ("PUT", "/v1/owners/{owner_id}"): GUARDED | {400, 413},
    ("GET", "/v1/owners/{owner_id}"): GUARDED | {400, 404},
    ("GET", "/v1/forward-auth"): {400, 401, 403, 429, 503},
    ("GET", "/v1/audit"): GUARDED | {400},
    ("GET", "/v1/audit/export"): GUARDED | {400},
    ("GET", "/v1/audit/public-key"): {400, 404, 503},  # public: no credentials
    ("GET", "/healthz"): set(),
    ("GET", "/readyz"): {503},
    ("GET", "/metrics"): GUARDED,  # a verify credential, or an admin key (which leases rate budget)
    ("GET", "/v1/reports/hygiene"): GUARDED | {400},
    ("GET", "/v1/analytics/usage"): GUARDED | {400, 404},
    ("POST", "/v1/webhooks"): GUARDED | {400, 413},
    ("GET", "/v1/webhooks"): GUARDED,
    ("GET", "/v1/webhooks/{endpoint_id}"): GUARDED | {400, 404},
    ("DELETE", "/v1/webhooks/{endpoint_id}"): GUARDED | {400, 404},
    ("POST", "/v1/webhooks/{endpoint_id}/enable"): GUARDED | {400, 404},
    ("POST", "/v1/webhooks/{endpoint_id}/disable"): GUARDED | {400, 404},
    ("GET", "/v1/webhooks/{endpoint_id}/deliveries"): GUARDED | {400, 404},
    ("GET", "/v1/findings"): GUARDED | {400},
    ("POST", "/v1/findings/{finding_id}/acknowledge"): GUARDED | {400, 404},
    ("POST", "/v1/leaks/github"): {400, 401, 413, 429, 503},  # signed by GitHub, not by a key
    ("POST", "/v1/leaks"): {400, 413, 429, 503},  # public: no credentials
}
SUCCESS = {
    ("POST", "/v1/keys"): ("201", "KeyWithSecret"),
    ("GET", "/v1/keys"): ("200", "KeyPage"),
    ("POST", "/v1/keys/import"): ("200", "ImportReport"),
    ("GET", "/v1/keys/{key_id}"): ("200", "KeyWithLastUse"),
    ("PATCH", "/v1/keys/{key_id}"): ("200", "Key"),
    ("POST", "/v1/keys/{key_id}/rotate"): ("200", "KeyWithSecret"),
    ("POST", "/v1/keys/{key_id}/revoke"): ("200", "Key"),
    ("POST", "/v1/keys/bulk"): ("200", "BulkResponse"),
    ("POST", "/v1/verify"): ("200", "VerifyAnswer"),
    ("PUT", "/v1/owners/{owner_id}"): ("200", "Owner"),
    ("GET", "/v1/owners/{owner_id}"): ("200", "Owner"),
    ("GET", "/v1/forward-auth"): ("200", "VerifyAnswer"),
    ("GET", "/v1/audit"): ("200", "AuditPage"),
    ("GET", "/v1/audit/public-key"): ("200", "AuditPublicKey"),
    ("GET", "/healthz"): ("200", "Health"),
    ("GET", "/readyz"): ("200", "Ready"),
    ("GET", "/v1/reports/hygiene"): ("200", "HygieneReport"),
    ("GET", "/v1/analytics/usage"): ("200", "UsageSeries"),
    ("POST", "/v1/webhooks"): ("201", "WebhookWithSecret"),
    ("GET", "/v1/webhooks"): ("200", "WebhookList"),
    ("GET", "/v1/webhooks/{endpoint_id}"): ("200", "Webhook"),
    ("GET", "/v1/webhooks/{endpoint_id}/deliveries"): ("200", "DeliveryPage"),
    ("GET", "/v1/findings"): ("200", "FindingPage"),
    ("POST", "/v1/findings/{finding_id}/acknowledge"): ("200", "Finding"),
    ("POST", "/v1/leaks"): ("202", "Received"),
}
KEY_FIELDS = {"id", "prefix", "start", "name", "description", "tags", "organization_id", "scopes", "access",
              "expires_at", "status", "version", "created_at", "updated_at", "revoked_at", "revoke_reason",
              "previous_secret_valid_until",
              "rate_limit", "rate_tier", "allowed_networks", "credits", "owner_id"}
FIELDS = {
    "Key": KEY_FIELDS, "KeyWithSecret": KEY_FIELDS | {"secret"}, "KeyWithLastUse": KEY_FIELDS | {"last_used_at"},
    "KeyPage": {"items", "next_cursor"}, "AuditPage": {"items", "next_cursor"},
    "AuditPublicKey": {"key_id", "algorithm", "public_key"},
    "VerifyAnswer": {"valid", "code", "reason", "key_id", "organization_id", "scopes", "granted_by", "expires_at",
                     "ratelimit", "credits", "owner"},
    "RateLimitState": {"limit", "remaining", "reset"}, "Access": {"resource", "id", "scopes"},
    "ErrorBody": {"success", "error", "code"}, "Health": {"status"}, "Ready": {"ready", "position", "lag", "keys",
                                                                               "forged", "degraded", "replicas"},
}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    app = create_app(Settings())  # never started: the schema needs no components
    return app.openapi_schema.to_schema()


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): op for path, ops in schema["paths"].items() for method, op in ops.items()}


def body_schema(response: dict[str, Any]) -> dict[str, Any]:
    media = next(iter(response["content"].values()))
    return media["schema"]  # type: ignore[no-any-return]


def test_every_operation_is_documented(schema: dict[str, Any]) -> None:
    assert set(operations(schema)) == set(ERRORS)


def test_every_success_response_has_its_body_schema(schema: dict[str, Any]) -> None:
    for key, op in operations(schema).items():
        successes = {status: r for status, r in op["responses"].items() if status.startswith("2")}
        assert len(successes) == 1, key
        ((status, response),) = successes.items()
        if key in SUCCESS:
            expected_status, component = SUCCESS[key]
            assert (status, body_schema(response)) == (expected_status, {"$ref": f"#/components/schemas/{component}"})
    export = operations(schema)[("GET", "/v1/audit/export")]["responses"]["200"]
    assert export["content"] == {"application/x-ndjson": {"schema": {"type": "string"}},
                                 "text/csv": {"schema": {"type": "string"}}}


def test_every_error_status_has_the_error_body(schema: dict[str, Any]) -> None:
    for key, op in operations(schema).items():
        errors = {int(status): r for status, r in op["responses"].items() if not status.startswith("2")}
        assert set(errors) == ERRORS[key], key
        for status, response in errors.items():
            assert body_schema(response) == ERROR_BODY, (key, status)
            assert response["description"], (key, status)


def test_the_bodies_carry_the_contract_field_names(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for name, fields in FIELDS.items():
        assert set(components[name]["properties"]) == fields, name
    code = components["VerifyAnswer"]["properties"]["code"]
    assert set(code["enum"]) == {"VALID", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "FORBIDDEN", "RATE_LIMITED",
                                 "UNAVAILABLE", "USAGE_EXCEEDED"}
    assert components["KeyWithSecret"]["required"].count("secret") == 1


def test_injected_collaborators_are_not_parameters(schema: dict[str, Any]) -> None:
    injected = set(dependencies())
    for key, op in operations(schema).items():
        assert not {p["name"] for p in op.get("parameters", [])} & injected, key


def test_guarded_operations_name_their_credentials(schema: dict[str, Any]) -> None:
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey", "gatewayCaller"}
    assert operations(schema)[("GET", "/v1/forward-auth")]["security"] == [{"gatewayCaller": []}, {}]
    for key, op in operations(schema).items():
        if 401 in ERRORS[key] and key[1] not in ("/v1/verify", "/v1/forward-auth", "/v1/leaks/github"):
            assert op["security"] == [{"bearer": []}, {"apiKey": []}], key


def test_nothing_imports_the_app_module() -> None:
    package = Path(http_package.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert "http.app import" not in text and "services_of" not in text, source


def test_every_body_taking_operation_documents_its_request_body(schema: dict[str, Any]) -> None:
    bodies = {key: op["requestBody"]["content"]["application/json"]["schema"]
              for key, op in operations(schema).items() if "requestBody" in op}
    assert bodies[("POST", "/v1/verify")] == {"$ref": "#/components/schemas/VerifyRequest"}  # the lean route too
    assert bodies[("POST", "/v1/keys")] == {"$ref": "#/components/schemas/CreateKeyRequest"}
    assert "VerifyRequest" in schema["components"]["schemas"]
