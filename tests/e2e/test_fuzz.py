"""Schemathesis over ``/schema``: every operation of a real ``keyledger serve``, with valid and invalid data.

For each operation, examples are generated from the OpenAPI document the server publishes (valid
requests and requests that break it), sent with a valid admin key (and a verify credential on
``POST /v1/verify``), and every answer must: not be a 5xx, use a status the operation documents, match
that status's schema (body and content type), and, for any 4xx, carry the structured error body
``{"success": false, "error": ..., "code": ...}``.

``TEST_FUZZ_EXAMPLES`` (default 40 per operation and generation mode) sets how many examples; ``make
chaos`` runs with many more. Short runs are derandomized (the same examples every run, so ``make test``
is reproducible); ``TEST_FUZZ_SEED`` picks another fixed seed, ``TEST_FUZZ_SEED=random`` a fresh one.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.server import ApiServer, StartServer

EXAMPLES = int(os.environ.get("TEST_FUZZ_EXAMPLES", "40"))
SEED = os.environ.get("TEST_FUZZ_SEED", "0")
Case = schemathesis.Case[Any]
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@schemathesis.check
def structured_error(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case) -> None:
    """Every refusal is ``{"success": false, "error": "<message>", "code": "<CODE>"}``."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code} without a JSON body: {response.text[:200]!r}") from None
    assert isinstance(body, dict), f"the error body is not an object: {body!r}"
    assert body.get("success") is False, f"the error body lacks success=false: {body!r}"
    assert isinstance(body.get("error"), str) and body["error"], f"the error body lacks a message: {body!r}"
    assert isinstance(body.get("code"), str) and body["code"].isupper(), f"the error body lacks a code: {body!r}"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          structured_error]


@pytest.fixture
def fuzzed(start_server: StartServer) -> ApiServer:
    """A server with verify closed (callers must present a credential) and rate limits out of the way:
    a fuzz run sends thousands of calls a minute with one admin key."""
    return start_server(extra_env={"KEYLEDGER_VERIFY_OPEN": "", "KEYLEDGER_RATE_STANDARD": "10000000",
                                   "KEYLEDGER_AUTH_FAILURE_LIMIT": "1000000"})


def _run(operation: Operation, mode: schemathesis.GenerationMode, base_url: str,
         headers: dict[str, str], failures: list[str]) -> None:
    fixed = SEED != "random"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink] if not fixed else [Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case: Case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=headers)

    if fixed:
        run = seed(int(SEED))(run)
    try:
        run()
    except Unsatisfiable:
        if mode is schemathesis.GenerationMode.POSITIVE or _takes_input(operation):
            failures.append(f"{operation.label} ({mode.value}): no example could be generated")
    except (Exception, ExceptionGroup) as exc:  # every operation is fuzzed; all failures are reported together
        failures.append(f"{operation.label} ({mode.value}):\n{exc}")


def _takes_input(operation: Operation) -> bool:
    """Whether the operation has anything a negative example could break (parameters or a body)."""
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


# Requests the generator found once (or that an attacker would try first), sent on every run.
KNOWN = [
    ("GET", "/v1/audit/export", {"format": "ndjson", "from": "2000-01-01T00:00:00Z", "to": "0.5"}),
    ("GET", "/v1/audit/export", {"format": "csv", "from": "0.5", "to": "2000-01-01T00:00:00Z"}),
    ("GET", "/v1/audit/export", {"from": "2000-01-01T00:00:00", "to": "2000-01-02T00:00:00Z"}),
    ("GET", "/v1/audit/export", {"from": "0193-01-09T16:08:04.83-15:55", "to": "9999-12-31T23:59:59Z"}),
    ("GET", "/v1/audit", {"from": "2000-01-01T00:00:00Z", "to": "0.5"}),
    ("GET", "/v1/audit", {"from": "2000-01-01T00:00:00", "to": "2000-01-01T00:00:00+14:00"}),
    ("GET", "/v1/audit", {"cursor": "\x00"}),
    ("GET", "/v1/audit", {"outcome": "VALID\x00", "organization_id": "\r\x00"}),  # found by a long run: 503
    ("GET", "/v1/audit", {"key_id": "x" * 5000}),
    ("GET", "/v1/keys", {"cursor": "!!"}),
]


@pytest.mark.timeout(max(120, EXAMPLES * 12))
def test_every_operation_survives_fuzzing(fuzzed: ApiServer) -> None:
    assert fuzzed.bootstrap_secret and fuzzed.verify_credential, fuzzed.log()
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/schema/openapi.json")
    admin = {"Authorization": f"Bearer {fuzzed.bootstrap_secret}"}
    verifier = {"Authorization": f"Bearer {fuzzed.verify_credential}"}
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12, [op.label for op in operations]
    failures: list[str] = []
    for operation in operations:
        headers = verifier if operation.path == "/v1/verify" else admin
        for mode in MODES:
            _run(operation, mode, fuzzed.url, headers, failures)
    for method, path, query in KNOWN:
        case = schema[path][method].Case(query=query)
        response = case.call(base_url=fuzzed.url, headers=admin, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS, headers=admin)
        except (Exception, ExceptionGroup) as exc:
            failures.append(f"{method} {path} {query}:\n{exc}")
    assert not failures, "\n\n".join(failures) + f"\n\nserver log:\n{fuzzed.log()[-4000:]}"
    # the admin key survived the run (no example revoked it), so every example was an authenticated one
    assert httpx.get(f"{fuzzed.url}/v1/keys", headers=admin).status_code == 200
