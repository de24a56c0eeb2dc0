"""The dashboard in headless Chromium against a real ``keyledger serve``: the keys list's checkboxes and bulk
revoke, which asks for the exact phrase ("revoke 2 keys") and shows each key's outcome; and a key's allowed
networks set in the create form (a bad CIDR shown beside the field) and shown on the key's page."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import create, verify
from tests.support.server import ApiServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def sign_in(page: Any, api: ApiServer, key: str) -> None:
    page.goto(f"{api.url}/dashboard")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="API Keys").wait_for()


def test_bulk_revoke_asks_for_the_exact_phrase_and_networks_are_set_in_the_form(
        page: Any, shot: Any, api: ApiServer, admin: str, client: httpx.Client) -> None:
    fleet = [create(client, admin, name=f"fleet {n}", scopes=["read:data"]) for n in (1, 2, 3)]
    sign_in(page, api, admin)
    page.get_by_label("Select fleet 1").check()
    page.get_by_label("Select fleet 3").check()
    shot(page, "checked")
    page.get_by_role("button", name="Revoke selected keys").click()
    page.get_by_role("heading", name="Revoke 2 keys").wait_for()
    assert "fleet 1" in page.locator("ul.bulk-list").inner_text()

    page.get_by_label("Type “revoke 2 keys” to confirm").fill("revoke 2 key")
    page.get_by_role("button", name="Revoke 2 keys").click()
    assert page.get_by_role("alert").inner_text().startswith("Type exactly “revoke 2 keys”")
    assert [verify(client, k["secret"], "read:data")["code"] for k in fleet] == ["VALID"] * 3  # nothing happened
    shot(page, "wrong-phrase")

    page.get_by_label("Type “revoke 2 keys” to confirm").fill("revoke 2 keys")
    page.get_by_label("Reason (optional)").fill("fleet retired")
    page.get_by_role("button", name="Revoke 2 keys").click()
    page.get_by_role("heading", name="Revoked 2 of 2 keys").wait_for()
    shot(page, "revoked")
    assert [verify(client, k["secret"], "read:data")["code"] for k in fleet] == ["REVOKED", "VALID", "REVOKED"]
    shown = client.get(f"/v1/keys/{fleet[0]['id']}", headers={"x-api-key": admin}).json()
    assert (shown["revoke_reason"], shown["version"]) == ("fleet retired", 2)
    page.get_by_role("link", name="Back to API Keys").click()
    assert page.get_by_label("Select fleet 1").count() == 0 and page.get_by_label("Select fleet 2").count() == 1

    page.get_by_role("link", name="Create API Key").click()
    page.get_by_label("Name", exact=True).fill("office only")
    page.get_by_label("Allowed networks").fill("203.0.113.0/24, 10.0.0.300/8")
    page.get_by_label("read:data", exact=True).check()
    page.get_by_role("button", name="Create key").click()
    assert "'10.0.0.300/8'" in page.locator("#allowed_networks-error").inner_text()
    page.get_by_label("Allowed networks").fill("203.0.113.9/24, 2001:DB8::/32")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret", exact=True).input_value()
    page.get_by_role("link", name="I have stored the secret").click()
    page.get_by_role("heading", name="office only").wait_for()
    assert "203.0.113.0/24 2001:db8::/32" in page.locator("dl.fields").inner_text()
    shot(page, "networks")
    assert verify(client, secret, "read:data", ip="203.0.113.50")["code"] == "VALID"
    assert verify(client, secret, "read:data", ip="198.51.100.1")["code"] == "FORBIDDEN"
