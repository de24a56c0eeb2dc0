"""Rotation follows the subset rule, reproduced through a real server: an organization's admin that holds
``admin:apikeys`` and ``read:data`` on one website rotated a stronger key of its organization and received
its new secret (verify said VALID for ``write:custom-sql``), while a grace period kept the owner's old secret
working, so nobody noticed. The same grant through PATCH was refused with 403."""

from __future__ import annotations

import re
from typing import Any

import httpx

from keyledger.domain import token
from tests.support.api import create, sign_in, verify

SITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]
STRONG_SCOPES = ["write:custom-sql", "admin:users", "read:export"]
STRONG = {"name": "owner's export key", "organization_id": "org-a", "scopes": STRONG_SCOPES, "rate_limit": 50_000}
LACKING = ("write:custom-sql on global", "admin:users on global", "read:export on global",
           "a per-key rate_limit of 50000/min (its own: 100/min)")


def org_admin(client: httpx.Client, admin: str) -> str:
    """The attacker: ``admin:apikeys`` plus ``read:data`` on site-a, in org-a (100/min, the standard tier)."""
    secret: str = create(client, admin, organization_id="org-a", scopes=["admin:apikeys"], access=SITE_A)["secret"]
    return secret


def key_as_seen_by(client: httpx.Client, admin: str, key_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/keys/{key_id}", headers={"x-api-key": admin})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_an_organization_admin_cannot_rotate_a_stronger_key(client: httpx.Client, admin: str) -> None:
    attacker = org_admin(client, admin)
    strong = create(client, admin, **STRONG)
    refused = client.post(f"/v1/keys/{strong['id']}/rotate", json={"grace_seconds": 3600},
                          headers={"x-api-key": attacker})
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert (body["success"], body["code"]) == (False, "FORBIDDEN") and "secret" not in body
    assert all(named in body["error"] for named in LACKING), body["error"]

    seen = key_as_seen_by(client, admin, strong["id"])  # no rotation event: same version, same secret
    assert (seen["version"], seen["start"], seen["previous_secret_valid_until"]) == (1, strong["start"], None)
    assert verify(client, strong["secret"], "write:custom-sql")["code"] == "VALID"

    # a key the admin could have granted itself it still rotates, made by it or by the global admin
    for weak in (create(client, attacker, access=SITE_A), create(client, admin, organization_id="org-a",
                                                                   access=SITE_A, rate_limit=100)):
        rotated = client.post(f"/v1/keys/{weak['id']}/rotate", json={"grace_seconds": 60},
                              headers={"x-api-key": attacker})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != weak["secret"] and verify(client, new, "read:data", website_id="site-a")["code"] == "VALID"
    mine = client.post("/v1/keys/" + _id_of(attacker) + "/rotate", headers={"x-api-key": attacker})
    assert mine.status_code == 200, mine.text  # its own key: everything on it is its own

    # the global admin rotates anything; revoking only takes power away, so the organization's admin may
    assert client.post(f"/v1/keys/{strong['id']}/rotate", headers={"x-api-key": admin}).status_code == 200
    revoked = client.post(f"/v1/keys/{strong['id']}/revoke", headers={"x-api-key": mine.json()["secret"]})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text


def test_a_patch_leaves_no_stronger_grant_in_the_hands_of_an_organization_admin(client: httpx.Client,
                                                                                admin: str) -> None:
    """Re-scoping a stronger key must not keep grants or a limit the admin lacks; a rename changes no grant."""
    attacker = org_admin(client, admin)
    strong = create(client, admin, **STRONG)
    path, headers = f"/v1/keys/{strong['id']}", {"x-api-key": attacker}
    for change, named in (({"rate_limit": 10}, "write:custom-sql on global"),  # keeps every scope it lacks
                          ({"access": SITE_A}, "rate_limit of 50000/min"),  # keeps the limit it lacks
                          ({"scopes": ["write:custom-sql"]}, "write:custom-sql on global is not granted")):
        refused = client.patch(path, json=change, headers=headers)
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN", refused.text
        assert named in refused.json()["error"]
    assert key_as_seen_by(client, admin, strong["id"])["version"] == 1
    renamed = client.patch(path, json={"name": "renamed", "tags": ["checked"]}, headers=headers)
    assert renamed.status_code == 200 and sorted(renamed.json()["scopes"]) == sorted(STRONG_SCOPES), renamed.text
    weakened = client.patch(path, json={"scopes": [], "access": SITE_A, "rate_limit": 0}, headers=headers)
    assert weakened.status_code == 200, weakened.text  # now a key it could have made: all of it is its own
    assert verify(client, strong["secret"], "write:custom-sql")["code"] == "FORBIDDEN"


def test_the_dashboard_refuses_the_same_rotation(client: httpx.Client, admin: str) -> None:
    attacker = org_admin(client, admin)
    strong = create(client, admin, **STRONG)
    weak = create(client, attacker, access=SITE_A)
    with httpx.Client(base_url=str(client.base_url), timeout=10) as browser:
        _sign_in(browser, attacker)
        page = _rotate(browser, strong["id"])
        assert page.status_code == 403, page.text
        assert 'id="grace-error"' in page.text and "write:custom-sql on global" in page.text
        assert "Key rotated" not in page.text and 'id="secret"' not in page.text
        assert key_as_seen_by(client, admin, strong["id"])["version"] == 1
        assert verify(client, strong["secret"], "write:custom-sql")["code"] == "VALID"

        allowed = _rotate(browser, weak["id"])  # the Rotate it is allowed still shows the new secret
        assert allowed.status_code == 200 and "Key rotated" in allowed.text, allowed.text
        new = re.search(r'id="secret" name="secret" value="([^"]+)"', allowed.text)
        assert new is not None and verify(client, new.group(1), "read:data", website_id="site-a")["valid"] is True


def _id_of(secret: str) -> str:
    return token.parse(secret).key_id


def _sign_in(browser: httpx.Client, key: str) -> None:
    signed = sign_in(browser, key)
    assert signed.status_code == 303, signed.text


def _rotate(browser: httpx.Client, key_id: str) -> httpx.Response:
    """Open the key's Rotate page and submit it with a one-hour grace period, as the Rotate button does."""
    form = browser.get(f"/dashboard/keys/{key_id}/rotate")
    assert form.status_code == 200, form.text
    fields = dict(re.findall(r'name="(csrf_token|version)" value="([^"]*)"', form.text))
    return browser.post(f"/dashboard/keys/{key_id}/rotate", data={**fields, "grace_seconds": "3600"})
