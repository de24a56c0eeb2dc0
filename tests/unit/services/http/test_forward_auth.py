"""``/v1/forward-auth`` over in-memory components: statuses, identity headers, where the ask comes from."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from keyledger.services.http.components import Components
from tests.support.asgi import WEBSITE_A, create
from tests.unit.services.http.fakes import RecordingUsage

Client = AsyncTestClient[Litestar]
AUTH = "/v1/forward-auth"


async def test_allowed_answers_200_with_identity_and_rate_limit_headers(client: Client, admin: str,
                                                                       components: Components) -> None:
    key = await create(client, admin, organization_id="org-1", access=WEBSITE_A, rate_limit=5)
    ok = await client.get(AUTH, params={"scope": "read:data", "website_id": "site-a"},
                          headers={"x-api-key": key["secret"], "X-Forwarded-Method": "GET", "user-agent": "ua/1",
                                   "X-Forwarded-Uri": "/v1/websites/site-a/stats?token=hide-me",
                                   "X-Forwarded-For": "198.51.100.9, 203.0.113.5"})
    assert ok.status_code == 200, ok.text
    assert (ok.headers["x-keyledger-key-id"], ok.headers["x-keyledger-organization-id"]) == (key["id"], "org-1")
    assert ok.headers["x-keyledger-scopes"] == "read:data" and ok.headers["x-ratelimit-remaining"] == "4"
    usage = components.usage
    assert isinstance(usage, RecordingUsage)
    event = usage.events[-1]
    assert (event.action, event.outcome, event.ip, event.user_agent, event.website_id) == (
        "forward-auth GET /v1/websites/site-a/stats", "VALID", "203.0.113.5", "ua/1", "site-a")


async def test_refusals_are_statuses_with_the_structured_body(client: Client, admin: str) -> None:
    key = await create(client, admin, access=WEBSITE_A, rate_limit=2)
    ask = {"scope": "read:data", "website_id": "site-a"}
    missing = await client.get(AUTH, params=ask)
    assert missing.status_code == 401 and missing.json() == {
        "success": False, "error": "Authentication required", "code": "AUTH_REQUIRED"}
    wrong = await client.get(AUTH, params=ask, headers={"authorization": f"Bearer {key['secret'][:-3]}abc"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "AUTH_REQUIRED"
    other = await client.get(AUTH, params={**ask, "website_id": "site-b"}, headers={"x-api-key": key["secret"]})
    assert other.status_code == 403 and other.json() == {
        "success": False, "error": "Insufficient permissions", "code": "FORBIDDEN"}
    await client.get(AUTH, params=ask, headers={"x-api-key": key["secret"]})
    limited = await client.get(AUTH, params=ask, headers={"x-api-key": key["secret"]})
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMITED"
    assert int(limited.headers["retry-after"]) >= 1 and limited.headers["x-ratelimit-remaining"] == "0"


async def test_a_query_configured_route_ignores_headers_a_client_adds(client: Client, admin: str) -> None:
    key = await create(client, admin, access=WEBSITE_A)
    # the route is configured by query without a website: a client naming its website in a header gains nothing
    smuggled = await client.get(AUTH, params={"scope": "read:data"},
                                headers={"x-api-key": key["secret"], "X-Keyledger-Website-Id": "site-a"})
    assert smuggled.status_code == 403
    by_headers = await client.get(AUTH, headers={"x-api-key": key["secret"], "X-Keyledger-Scope": "read:data",
                                                 "X-Keyledger-Website-Id": "site-a"})
    assert by_headers.status_code == 200


async def test_envoy_form_takes_the_path_and_method_and_only_headers(client: Client, admin: str,
                                                                    components: Components) -> None:
    key = await create(client, admin, access=WEBSITE_A)
    headers = {"x-api-key": key["secret"], "X-Keyledger-Scope": "read:data", "X-Keyledger-Website-Id": "site-a"}
    ok = await client.post(f"{AUTH}/api/stats", params={"website_id": "site-b"}, headers=headers)
    assert ok.status_code == 200, ok.text  # the query belongs to the client: ignored
    usage = components.usage
    assert isinstance(usage, RecordingUsage) and usage.events[-1].action == "forward-auth POST /api/stats"


async def test_bad_configuration_is_a_400(client: Client, admin: str) -> None:
    key = await create(client, admin, access=WEBSITE_A)
    for params in ({}, {"scope": "read:everything"}, {"scope": "read:data", "data": "gossip"}):
        response = await client.get(AUTH, params=params, headers={"x-api-key": key["secret"]})
        assert response.status_code == 400 and response.json()["code"] == "VALIDATION_ERROR", params
