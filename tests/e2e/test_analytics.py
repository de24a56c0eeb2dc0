"""The usage analytics API through a real server: ``GET /v1/analytics/usage`` counts the verifications the test
makes (stored by the server's own audit sink), per hour and per day, by outcome, scope and website, for one key,
one organization's keys and every key; an organization's admin sees only its organization's usage (another's
key is 404, another organization 403); bad input is a structured 400 naming the parameter; the dashboard's
chart shows the same counts.

Two servers share one database: one whose clock starts at 2030-01-01T00:00Z (with the relay, projector and
audit sink) and one 26 hours ahead, so the verifications fall into two hours of two days."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, sign_in, verify
from tests.support.clock import ReferenceClock
from tests.support.databases import endpoints_of, own_database
from tests.support.pipeline import isolated_settings
from tests.support.server import ApiServer
from tests.support.wait import until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
SITES = [{"resource": "website", "id": "site-a", "scopes": ["read:data", "write:data"]},
         {"resource": "website", "id": "site-b", "scopes": ["read:data"]}]
DAY_ONE, DAY_TWO_2AM = "2030-01-01T00:00:00Z", "2030-01-02T02:00:00Z"
OWNED = {"owner_id": "customer-1"}


@dataclass(frozen=True)
class World:
    """The keys, and the admin keys that read their usage."""

    url: str
    root: str  # a global admin key
    org_admin: str  # org-a's admin key
    mine: dict[str, Any]  # an org-a key, used on both servers
    theirs: dict[str, Any]  # an org-b key


def series(client: httpx.Client, admin: str, **params: str) -> httpx.Response:
    return client.get("/v1/analytics/usage", params=params, headers={"x-api-key": admin})


def total_of(client: httpx.Client, admin: str, key_id: str) -> int:
    answer = series(client, admin, key_id=key_id, **{"from": DAY_ONE, "to": "2030-01-03T00:00:00Z"},
                    interval="day")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["total"])


@pytest.fixture(scope="module")
def world(servers: tuple[str, str], stack_info: StackInfo | None,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The two servers, the keys, and their verifications, stored by the audit sink."""
    logs, clock, settings = Path(tmp_path_factory.mktemp("analytics")), ReferenceClock(), isolated_settings()
    with own_database(servers[0]) as database_url:
        env = endpoints_of(database_url, servers, stack_info).environment()
        started: list[ApiServer] = []
        try:
            first = ApiServer(database_url, servers[1], settings, logs, extra_env=env, clock=clock)
            started.append(first.wait_ready())
            assert first.bootstrap_secret is not None, first.log()
            later = ApiServer(database_url, servers[1], settings, logs, workers=False, extra_env=env, clock=clock,
                              ahead=timedelta(hours=26))
            started.append(later.wait_ready())
            with httpx.Client(base_url=first.url, timeout=10) as api, \
                    httpx.Client(base_url=later.url, timeout=10) as ahead:
                root = create(api, first.bootstrap_secret, scopes=["admin:apikeys"], rate_limit=1_000_000)["secret"]
                org_admin = create(api, root, organization_id="org-a", rate_limit=1_000_000,
                                   scopes=["admin:apikeys", "read:data", "write:data"])["secret"]
                mine = create(api, org_admin, name="mine", access=SITES, rate_limit=1_000_000, **OWNED)
                theirs = create(api, root, name="theirs", organization_id="org-b", rate_limit=1_000_000,
                                access=[{"resource": "website", "id": "site-z", "scopes": ["read:data"]}], **OWNED)
                for scope, site, times, code in (("read:data", "site-a", 3, "VALID"),
                                                 ("read:data", "site-b", 1, "VALID"),
                                                 ("write:data", "site-b", 2, "FORBIDDEN")):
                    for _ in range(times):
                        assert verify(api, mine["secret"], scope, website_id=site)["code"] == code
                for _ in range(2):
                    assert verify(api, theirs["secret"], "read:data", website_id="site-z")["code"] == "VALID"
                until_sync(lambda: ahead.get(f"/v1/keys/{mine['id']}", headers={"x-api-key": root}).status_code
                           == 200, what="the later server to know the key")
                assert verify(ahead, mine["secret"], "read:data", website_id="site-a")["code"] == "VALID"
                until_sync(lambda: total_of(api, root, mine["id"]) == 7 and total_of(api, root, theirs["id"]) == 2,
                           timeout=30, interval=0.1, what="the audit sink to store the verifications")
            yield World(url=first.url, root=root, org_admin=org_admin, mine=mine, theirs=theirs)
        finally:
            for server in reversed(started):
                server.stop()


@pytest.fixture
def client(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.url, timeout=10) as http:
        yield http


def counts(body: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The buckets that counted something, by start."""
    return {bucket["start"]: bucket["counts"] for bucket in body["buckets"] if bucket["total"]}


def test_a_keys_series_per_hour_and_day_by_outcome_scope_and_website(client: httpx.Client, world: World) -> None:
    hourly = series(client, world.root, key_id=world.mine["id"], **{"from": DAY_ONE, "to": "2030-01-02T03:00:00Z"})
    assert hourly.status_code == 200, hourly.text
    body = hourly.json()
    assert (body["interval"], body["group_by"], body["from"], body["to"]) == (
        "hour", "outcome", "2030-01-01T00:00:00Z", "2030-01-02T03:00:00Z")
    assert len(body["buckets"]) == 27 and body["buckets"][1] == {"start": "2030-01-01T01:00:00Z", "total": 0,
                                                                   "counts": {}}
    assert counts(body) == {"2030-01-01T00:00:00Z": {"VALID": 4, "FORBIDDEN": 2}, DAY_TWO_2AM: {"VALID": 1}}
    assert (body["totals"], body["total"], body["groups"]) == ({"VALID": 5, "FORBIDDEN": 2}, 7, ["VALID", "FORBIDDEN"])

    daily = series(client, world.root, key_id=world.mine["id"], interval="day", group_by="scope",
                   **{"from": "2030-01-01T05:30:00+05:30", "to": "2030-01-02T12:00:00Z"}).json()  # rounded to days
    assert (daily["from"], daily["to"]) == ("2030-01-01T00:00:00Z", "2030-01-03T00:00:00Z")
    assert counts(daily) == {"2030-01-01T00:00:00Z": {"read:data": 4, "write:data": 2},
                             "2030-01-02T00:00:00Z": {"read:data": 1}}
    websites = series(client, world.root, key_id=world.mine["id"], group_by="website",
                      **{"from": DAY_ONE, "to": "2030-01-02T03:00:00Z"}).json()
    assert counts(websites) == {"2030-01-01T00:00:00Z": {"site-a": 3, "site-b": 3}, DAY_TWO_2AM: {"site-a": 1}}


def test_an_organizations_series_holds_only_its_keys(client: httpx.Client, world: World) -> None:
    span = {"from": DAY_ONE, "to": "2030-01-03T00:00:00Z"}
    own = series(client, world.org_admin, group_by="website", interval="day", **span)
    assert own.status_code == 200, own.text
    by_day = counts(own.json())
    assert {site: n for site, n in by_day["2030-01-01T00:00:00Z"].items() if site} == {"site-a": 3, "site-b": 3}
    assert by_day["2030-01-02T00:00:00Z"] == {"site-a": 1}
    # the organization admin's own calls count too, as requests that named no website (and used admin:apikeys)
    assert own.json()["totals"][""] >= 1  # at least its create call
    scopes = series(client, world.root, organization_id="org-a", group_by="scope", **span).json()
    assert counts(scopes)[DAY_TWO_2AM] == {"read:data": 1}
    assert counts(scopes)["2030-01-01T00:00:00Z"]["write:data"] == 2
    assert scopes["totals"]["read:data"] == 5

    everyone = series(client, world.root, group_by="website", interval="day", **span).json()
    assert everyone["totals"]["site-z"] == 2 and everyone["totals"]["site-a"] == 4
    other = series(client, world.root, organization_id="org-b", group_by="outcome", interval="day", **span).json()
    assert other["totals"] == {"VALID": 2}  # its key's verifications (org-b has no admin key of its own)


def test_an_organizations_admin_cannot_read_another_organizations_usage(client: httpx.Client, world: World) -> None:
    key = series(client, world.org_admin, key_id=world.theirs["id"])
    assert key.status_code == 404 and key.json() == {"success": False, "code": "NOT_FOUND",
                                                      "error": f"key {world.theirs['id']} not found"}
    organization = series(client, world.org_admin, organization_id="org-b")
    assert organization.status_code == 403 and organization.json()["code"] == "FORBIDDEN"
    mismatched = series(client, world.root, key_id=world.mine["id"], organization_id="org-b")
    assert mismatched.status_code == 404 and mismatched.json()["code"] == "NOT_FOUND"
    assert series(client, world.org_admin, key_id=world.mine["id"]).status_code == 200
    reader = create(client, world.root, scopes=["read:data"])
    assert series(client, reader["secret"]).json()["code"] == "FORBIDDEN"  # no admin:apikeys
    assert series(client, "kl_not_a_key").status_code == 401


@pytest.mark.parametrize(("params", "names"), [
    ({"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "from must not be after to"),
    ({"interval": "minute"}, "interval"),
    ({"group_by": "ip"}, "group_by"),
    ({"from": "2029-01-01T00:00:00Z", "to": "2030-01-03T00:00:00Z"}, "366 days"),
    ({"interval": "day", "from": "2010-01-01T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "3660 days"),
    ({"from": "yesterday"}, "from must be an ISO 8601 time"),
    ({"to": "2030-01-01T00:00:00"}, "to must name its time zone"),
    ({"organization_id": "a\x00b"}, "organization_id"),
])
def test_bad_input_is_a_400_naming_the_parameter(client: httpx.Client, world: World, params: dict[str, str],
                                                 names: str) -> None:
    answer = series(client, world.root, **params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["success"] is False and answer.json()["code"] == "VALIDATION_ERROR"
    assert names in answer.json()["error"]


def test_the_longest_ranges_are_answered(client: httpx.Client, world: World) -> None:
    year = series(client, world.root, key_id=world.mine["id"], **{"from": "2029-01-01T00:00:00Z",
                                                                  "to": "2030-01-02T00:00:00Z"})
    assert year.status_code == 200, year.text
    assert len(year.json()["buckets"]) == 366 * 24 and year.json()["totals"] == {"VALID": 4, "FORBIDDEN": 2}
    default = series(client, world.root, key_id=world.mine["id"]).json()  # the last 24 hours, this one included
    assert len(default["buckets"]) == 24 and default["to"] == "2030-01-01T01:00:00Z"
    assert default["totals"] == {"VALID": 4, "FORBIDDEN": 2}


def test_an_owners_series_holds_its_keys_the_caller_sees(client: httpx.Client, world: World) -> None:
    span = {"from": DAY_ONE, "to": "2030-01-03T00:00:00Z", "interval": "day"}
    both = series(client, world.root, owner_id="customer-1", **span)
    assert both.status_code == 200, both.text
    assert both.json()["totals"] == {"VALID": 7, "FORBIDDEN": 2}  # mine's 5 and 2, theirs' 2
    own = series(client, world.org_admin, owner_id="customer-1", **span).json()  # only org-a's key
    assert counts(own) == {"2030-01-01T00:00:00Z": {"VALID": 4, "FORBIDDEN": 2}, "2030-01-02T00:00:00Z": {"VALID": 1}}
    assert series(client, world.root, owner_id="customer-1", key_id=world.theirs["id"], **span).json()["totals"] \
        == {"VALID": 2}
    nobody = series(client, world.root, owner_id="nobody", **span)
    assert nobody.status_code == 404 and nobody.json()["code"] == "NOT_FOUND"
    assert series(client, world.org_admin, owner_id="customer-2").status_code == 404


def test_the_dashboards_chart_shows_the_same_counts(client: httpx.Client, world: World) -> None:
    assert sign_in(client, world.root).status_code == 303
    page = client.get(f"/dashboard/keys/{world.mine['id']}")
    assert page.status_code == 200, page.text
    assert "Verifications per hour over the last 24 hours: 2 FORBIDDEN, 4 VALID" in page.text
