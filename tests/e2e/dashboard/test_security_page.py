"""The Security page in headless Chromium against a real ``keyledger serve``: the findings its watch raised
from verifies (a revoked key used with its secret, wrong secrets for a key) are listed with what was seen;
"Acknowledge" takes one off the open list (it stays under "Acknowledged"); a key's detail view shows its
findings and acknowledges them too; another organization's admin sees none of them."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from keyledger.domain import token
from keyledger.services.cli.supervise import ROLES
from tests.support.api import create, verify
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def api(start_server: StartServer) -> ApiServer:
    """A server whose watch role raises the findings (test servers start it only when asked)."""
    return start_server(roles=ROLES)


def sign_in(page: Any, api: ApiServer, key: str) -> None:
    page.goto(f"{api.url}/dashboard")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="API Keys").wait_for()


def open_findings(client: httpx.Client, auditor: str) -> dict[str, dict[str, Any]]:
    answer = client.get("/v1/findings", params={"status": "open"}, headers={"x-api-key": auditor})
    assert answer.status_code == 200, answer.text
    return {f["kind"]: f for f in answer.json()["items"]}


def test_the_security_page_lists_and_acknowledges_findings(page: Any, shot: Any, api: ApiServer, admin: str,
                                                           client: httpx.Client, auditor: str) -> None:
    leaky = create(client, admin, name="leaky", organization_id="org-1", scopes=["read:data"])
    target = create(client, admin, name="target", organization_id="org-1", scopes=["read:data"])
    assert verify(client, leaky["secret"], "read:data", ip="203.0.113.10")["valid"] is True
    assert client.post(f"/v1/keys/{leaky['id']}/revoke", headers={"x-api-key": admin}).status_code == 200
    assert verify(client, leaky["secret"], "read:data", ip="203.0.113.10")["code"] == "REVOKED"
    for i in range(10):
        wrong = token.format_token("kl", target["id"], token.new_secret(secrets.token_bytes))
        assert verify(client, wrong, "read:data", ip=f"203.0.113.{20 + i}")["code"] == "NOT_FOUND"
    until_sync(lambda: set(open_findings(client, auditor)) == {"revoked_key_used", "secret_guessing"}, timeout=30,
               interval=0.2, what="the watch's findings", explain=api.log)

    sign_in(page, api, admin)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Security").click()
    page.get_by_role("heading", name="Security").wait_for()
    table = page.locator("table.findings")
    assert "Revoked or expired key used" in table.inner_text() and "Wrong secrets for this key" in table.inner_text()
    assert "10 wrong secrets within 5 minutes, the latest from 203.0.113.29." in table.inner_text()
    assert page.get_by_role("link", name="leaky").count() == 1
    shot(page, "security")
    page.get_by_role("button", name="Acknowledge Wrong secrets for this key of target").click()
    rows = page.locator("table.findings tbody tr")
    until_sync(lambda: rows.count() == 1, timeout=10, interval=0.05, what="the open findings without it")
    assert "Revoked or expired key used" in rows.inner_text() and "Wrong secrets" not in rows.inner_text()
    page.get_by_label("Status").select_option("acknowledged")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("table.findings tbody tr")
    until_sync(lambda: row.count() == 1 and "Wrong secrets for this key" in row.inner_text(), timeout=10,
               interval=0.05, what="the acknowledged finding")
    assert "Acknowledged" in row.inner_text() and "key:" in row.inner_text()
    shot(page, "acknowledged")

    page.goto(f"{api.url}/dashboard/keys/{leaky['id']}")
    section = page.locator("section", has=page.get_by_role("heading", name="Security findings"))
    assert "The revoked key was presented with its correct secret from 203.0.113.10." in section.inner_text()
    section.get_by_role("button", name="Acknowledge Revoked or expired key used").click()
    page.get_by_role("heading", name="leaky").wait_for()
    assert "Acknowledged" in page.locator("section", has=page.get_by_role(
        "heading", name="Security findings")).inner_text()
    shot(page, "key-findings")
    assert open_findings(client, auditor) == {}

    other = create(client, admin, name="org-2 admin", organization_id="org-2", scopes=["admin:apikeys"])
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, api, other["secret"])
    page.goto(f"{api.url}/dashboard/security?status=")
    assert page.get_by_text("No findings match.").is_visible()
    assert page.locator("table.findings").count() == 0
