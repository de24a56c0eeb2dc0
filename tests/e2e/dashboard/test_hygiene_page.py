"""The Hygiene page in headless Chromium against a real ``keyledger serve``: the example key of the issue (global
``read:data``, ``write:data``, ``read:export``, used only to read ``site-a``) is listed as overprivileged with
its suggestion in words; "Apply suggestion" on a page made before someone else changed the key shows the
conflict and applies nothing, as does a post without the session's CSRF token; applied from the fresh page,
the key keeps exactly what it used."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.api import create, verify
from tests.support.server import ApiServer
from tests.support.wait import until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
WEBSITE_A = [{"resource": "website", "id": "site-a", "scopes": ["read:data"]}]


def key_view(client: httpx.Client, auditor: str, key_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/keys/{key_id}", headers={"x-api-key": auditor})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def suggestion_ready(client: httpx.Client, auditor: str, key_id: str) -> bool:
    items = client.get("/v1/reports/hygiene", headers={"x-api-key": auditor}).json()["items"]
    return any(item["id"] == key_id and item["suggestion"] is not None for item in items)


def test_apply_suggestion_on_the_hygiene_page(page: Any, shot: Any, api: ApiServer, admin: str, auditor: str,
                                              client: httpx.Client) -> None:
    key = create(client, admin, name="site-a ingest", scopes=["read:data", "write:data", "read:export"])
    for _ in range(3):
        assert verify(client, key["secret"], "read:data", website_id="site-a")["valid"]
    until_sync(lambda: suggestion_ready(client, auditor, key["id"]), timeout=20, interval=0.2,
               what="the report's suggestion")

    page.goto(f"{api.url}/dashboard")
    page.get_by_label("API key").fill(admin)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="API Keys").wait_for()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Hygiene").click()
    page.get_by_role("heading", name="Hygiene", exact=True).wait_for()
    page.get_by_role("link", name="Overprivileged").click()
    row = page.locator(f"#key-{key['id']}")
    assert "Overprivileged" in row.inner_text() and "No expiry" in row.inner_text()
    assert "Keep only: read:data on website site-a" in row.inner_text()
    assert "Removes: read:data on every resource (global); read:export on every resource (global); write:data" \
        in row.inner_text()
    shot(page, "hygiene")

    forged = page.request.post(f"{api.url}/dashboard/keys/{key['id']}/apply-suggestion", max_redirects=0,
                               form={"version": "1", "patch": json.dumps({"scopes": [], "access": []})})
    assert forged.status == 403  # the session's cookie, but no CSRF token: refused, nothing changed
    assert key_view(client, auditor, key["id"])["version"] == 1

    renamed = client.patch(f"/v1/keys/{key['id']}", json={"name": "site-a ingest (renamed)"},
                           headers={"x-api-key": admin, "If-Match": '"1"'})  # someone else, meanwhile
    assert renamed.status_code == 200, renamed.text
    row.get_by_role("button", name="Apply suggestion").click()
    conflict = page.get_by_role("alert")
    conflict.wait_for()
    assert "Conflict" in conflict.inner_text() and "Nothing was applied" in conflict.inner_text()
    assert "version 2" in conflict.inner_text()
    shot(page, "conflict")
    unchanged = key_view(client, auditor, key["id"])
    assert (unchanged["version"], unchanged["scopes"]) == (2, ["read:data", "read:export", "write:data"])

    page.locator(f"#key-{key['id']}").get_by_role("button", name="Apply suggestion").click()
    page.get_by_role("heading", name="site-a ingest (renamed)").wait_for()  # the key's detail page
    applied = key_view(client, auditor, key["id"])
    assert (applied["version"], applied["scopes"], applied["access"]) == (3, [], WEBSITE_A)
    for _ in range(3):
        assert verify(client, key["secret"], "read:data", website_id="site-a")["code"] == "VALID"
    assert verify(client, key["secret"], "write:data", website_id="site-a")["code"] == "FORBIDDEN"
    assert verify(client, key["secret"], "read:data", website_id="site-b")["code"] == "FORBIDDEN"

    page.goto(f"{api.url}/dashboard/hygiene")
    assert "Keep only" not in page.locator(f"#key-{key['id']}").inner_text()
    shot(page, "applied")
