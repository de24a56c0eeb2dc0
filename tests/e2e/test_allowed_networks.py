"""IP allowlists through a real server: ``allowed_networks`` on create and PATCH (normalised, a bad CIDR a 400
naming it), verify FORBIDDEN for an end client outside them or a request naming no ip, and an admin key with
an allowlist checked against the client's address (through the trusted proxy the test client plays) on the
management API and the dashboard's sign-in."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create, sign_in, verify
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer

pytestmark = pytest.mark.e2e

PROXIED = {"KEYLEDGER_TRUSTED_PROXIES": "127.0.0.1/32"}  # the test client plays the proxy
INSIDE, OUTSIDE, INSIDE_V6 = "203.0.113.10", "198.51.100.66", "2001:db8::10"


@pytest.fixture(scope="module")
def server(servers: tuple[str, str], stack_info: StackInfo | None,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process for the module, trusting 127.0.0.1 as its proxy."""
    with module_server(servers, stack_info, tmp_path_factory, "networks", extra_env=PROXIED) as api:
        yield api


@pytest.fixture(scope="module")
def root(server: ApiServer) -> str:
    """A global admin key without an allowlist that may call as often as the tests do."""
    return root_key(server)


@pytest.fixture
def api(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_networks_are_normalised_and_a_verify_outside_them_is_forbidden(api: httpx.Client, root: str) -> None:
    key = create(api, root, scopes=["read:data"], rate_limit=1_000_000,
                 allowed_networks=["203.0.113.5/24", "2001:DB8::/32", "192.0.2.7"])
    assert key["allowed_networks"] == ["203.0.113.0/24", "2001:db8::/32", "192.0.2.7/32"]
    shown = api.get(f"/v1/keys/{key['id']}", headers={"x-api-key": root}).json()
    assert shown["allowed_networks"] == key["allowed_networks"]
    secret = key["secret"]

    assert verify(api, secret, "read:data", ip=INSIDE)["code"] == "VALID"
    assert verify(api, secret, "read:data", ip=INSIDE_V6)["code"] == "VALID"
    assert verify(api, secret, "read:data", ip="192.0.2.7")["code"] == "VALID"
    outside = verify(api, secret, "read:data", ip=OUTSIDE)
    assert (outside["valid"], outside["code"]) == (False, "FORBIDDEN")
    assert OUTSIDE in outside["reason"], outside
    unnamed = verify(api, secret, "read:data")
    assert (unnamed["code"], unnamed["reason"]) == ("FORBIDDEN", "this key is limited to listed networks; the "
                                                                 "request names no ip")
    # the scope is decided first: a scope the key lacks says so, wherever the client is
    assert "write:data" in verify(api, secret, "write:data", ip=INSIDE)["reason"]

    # a changed list holds from the next verify on (parsed once per key state, never stale)
    changed = api.patch(f"/v1/keys/{key['id']}", json={"allowed_networks": ["198.51.100.0/24"]},
                        headers={"x-api-key": root})
    assert changed.status_code == 200 and changed.json()["allowed_networks"] == ["198.51.100.0/24"], changed.text
    assert verify(api, secret, "read:data", ip=OUTSIDE)["code"] == "VALID"
    assert verify(api, secret, "read:data", ip=INSIDE)["code"] == "FORBIDDEN"
    cleared = api.patch(f"/v1/keys/{key['id']}", json={"allowed_networks": []}, headers={"x-api-key": root})
    assert cleared.json()["allowed_networks"] == []
    assert verify(api, secret, "read:data")["code"] == "VALID"


def test_a_bad_cidr_is_a_400_naming_it_and_changes_nothing(api: httpx.Client, root: str) -> None:
    admin = {"x-api-key": root}

    def listed() -> list[tuple[str, int]]:
        items = api.get("/v1/keys", params={"limit": 100}, headers=admin).json()["items"]
        return [(k["id"], k["version"]) for k in items]
    before = listed()
    refused = api.post("/v1/keys", json={"name": "bad", "allowed_networks": ["10.0.0.0/8", "10.0.0.300/24"]},
                       headers=admin)
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"success": False, "code": "VALIDATION_ERROR", "error": refused.json()["error"]}
    assert "'10.0.0.300/24'" in refused.json()["error"]
    assert listed() == before

    key = create(api, root, scopes=["read:data"], allowed_networks=["10.0.0.0/8"])
    patched = api.patch(f"/v1/keys/{key['id']}", json={"allowed_networks": ["fe80::/129"]}, headers=admin)
    assert patched.status_code == 400 and "'fe80::/129'" in patched.json()["error"], patched.text
    after = api.get(f"/v1/keys/{key['id']}", headers=admin).json()
    assert (after["version"], after["allowed_networks"]) == (key["version"], ["10.0.0.0/8"])


def test_an_admin_key_with_an_allowlist_is_checked_against_the_client_address(api: httpx.Client, root: str,
                                                                               server: ApiServer) -> None:
    limited = create(api, root, scopes=["admin:apikeys"], rate_limit=1_000_000,
                     allowed_networks=["203.0.113.0/24"])["secret"]
    inside = api.get("/v1/keys", headers={"x-api-key": limited, "X-Forwarded-For": INSIDE})
    assert inside.status_code == 200, inside.text
    outside = api.get("/v1/keys", headers={"x-api-key": limited, "X-Forwarded-For": OUTSIDE})
    assert outside.status_code == 403 and outside.json()["code"] == "FORBIDDEN", outside.text
    assert OUTSIDE in outside.json()["error"]
    direct = api.post("/v1/keys", json={"name": "from the proxy itself"}, headers={"x-api-key": limited})
    assert direct.status_code == 403 and "127.0.0.1" in direct.json()["error"], direct.text  # no forwarded client

    with httpx.Client(base_url=server.url, timeout=10, headers={"X-Forwarded-For": OUTSIDE}) as browser:
        refused = sign_in(browser, limited)
        assert refused.status_code == 403 and OUTSIDE in refused.text, refused.text
    with httpx.Client(base_url=server.url, timeout=10, headers={"X-Forwarded-For": INSIDE}) as browser:
        assert sign_in(browser, limited).status_code == 303
        assert browser.get("/dashboard/keys").status_code == 200
