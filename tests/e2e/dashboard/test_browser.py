"""The dashboard in headless Chromium against a real ``keyledger serve``: an administrator signs in with the
bootstrap key, creates a website-scoped key, uses it, watches its usage, rotates it (the old secret works
for its grace period, and not after) and revokes it; an
organization's admin sees only its organization; a stale edit shows the conflict. Pages are driven by
their accessible names (the labels and buttons the issue spells)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import create, usage_for
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def sign_in(page: Any, api: ApiServer, key: str) -> None:
    page.goto(f"{api.url}/dashboard")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="API Keys").wait_for()


def verify(client: httpx.Client, key: str, website: str) -> dict[str, Any]:
    request_id = uuid.uuid4().hex
    answer = client.post("/v1/verify", json={"key": key, "scope": "read:data", "website_id": website,
                                             "ip": "203.0.113.7", "user_agent": "browser-test"},
                         headers={"x-request-id": request_id})
    assert answer.status_code == 200, answer.text
    return {**answer.json(), "request_id": request_id}


def status_word(page: Any) -> str:
    return str(page.locator(".status .badge").first.inner_text())


def test_create_use_watch_rotate_and_revoke_a_key(page: Any, shot: Any, api: ApiServer, admin: str,
                                                   client: httpx.Client, auditor: str, replica: StartServer) -> None:
    sign_in(page, api, admin)
    shot(page, "keys")
    page.get_by_role("link", name="Create API Key").click()
    page.get_by_label("Name", exact=True).fill("site-a reader")
    page.get_by_label("Description", exact=True).fill("Reads analytics of site-a")
    page.get_by_label("Organization", exact=True).fill("org-1")
    page.get_by_label("Resource type (row 1)").select_option("website")
    page.get_by_label("Website id (row 1)").fill("site-a")
    page.get_by_label("Scopes (row 1)").select_option(["read:data"])
    assert page.get_by_label("read:data", exact=True).is_visible()  # the 15 scopes, labelled by themselves
    shot(page, "create")
    page.get_by_role("button", name="Create key").click()

    secret_field = page.get_by_label("Secret", exact=True)
    secret = secret_field.input_value()
    assert secret.startswith("kl_") and not secret_field.is_editable()
    assert page.get_by_text("It will not be shown again").is_visible()
    page.get_by_role("button", name="Copy").click()
    until_sync(lambda: page.locator("#copy-status").inner_text() != "", timeout=10, interval=0.05,
               what="the copy button to report")
    dialogs: list[str] = []

    def stay(dialog: Any) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()

    page.on("dialog", stay)
    page.get_by_role("link", name="API Keys").click()  # leaving the secret asks first; dismissed: we stay
    until_sync(lambda: dialogs == ["beforeunload"], timeout=10, interval=0.05, what="the leave confirmation")
    assert page.get_by_label("Secret", exact=True).input_value() == secret
    page.remove_listener("dialog", stay)
    shot(page, "secret")
    page.get_by_role("link", name="I have stored the secret").click()
    page.get_by_role("heading", name="site-a reader").wait_for()
    assert status_word(page) == "Active"
    key_url = page.url

    valid, refused = verify(client, secret, "site-a"), verify(client, secret, "site-b")
    assert (valid["valid"], valid["code"], refused["code"]) == (True, "VALID", "FORBIDDEN")
    usage_for(client, auditor, valid["request_id"])
    usage_for(client, auditor, refused["request_id"])
    page.goto(key_url)
    usage = page.locator("table.usage tbody")
    assert "website site-a" in usage.inner_text() and "website site-b" in usage.inner_text()
    assert "VALID" in usage.inner_text() and "FORBIDDEN" in usage.inner_text()
    assert page.get_by_text("read:data on website site-a", exact=True).is_visible()
    assert "1 VALID" in str(page.locator("svg.chart").get_attribute("aria-label"))
    shot(page, "detail")

    page.get_by_role("button", name="Rotate").click()
    page.get_by_label("Grace period").select_option(label="15 minutes")
    page.get_by_role("button", name="Rotate key").click()
    rotated = page.get_by_label("Secret", exact=True).input_value()
    assert rotated != secret and rotated.startswith("kl_")
    assert page.get_by_text("The old secret keeps working until").is_visible()
    shot(page, "rotated")
    page.get_by_role("link", name="I have stored the secret").click()
    assert verify(client, secret, "site-a")["valid"] is True  # in its grace period
    assert verify(client, rotated, "site-a")["valid"] is True
    later = replica(ahead=timedelta(minutes=16))  # the same keys, seen 16 minutes on: the grace is over
    with httpx.Client(base_url=later.url, timeout=10) as after_grace:
        assert verify(after_grace, secret, "site-a")["valid"] is False
        assert verify(after_grace, rotated, "site-a")["valid"] is True

    page.get_by_role("button", name="Revoke").click()
    page.get_by_label("Type the key name to confirm").fill("site-a reader")
    shot(page, "revoke")
    page.get_by_role("button", name="Revoke key").click()
    page.get_by_role("heading", name="site-a reader").wait_for()
    assert status_word(page) == "Revoked"
    assert verify(client, rotated, "site-a")["code"] == "REVOKED"
    assert page.get_by_role("button", name="Rotate").count() == 0
    shot(page, "revoked")

    page.get_by_role("link", name="Audit trail").click()
    page.get_by_label("Kind").select_option("lifecycle")
    page.get_by_role("button", name="Filter").click()
    trail = page.locator("table.audit tbody").inner_text()
    assert "key.revoked" in trail and "key.rotated" in trail and "key.created" in trail
    shot(page, "audit")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download NDJSON").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) > 3 and all(json.loads(line) for line in lines)
    assert download.value.suggested_filename == "keyledger-audit.ndjson" and rotated not in "".join(lines)


def test_an_organization_admin_sees_only_its_organization_and_loses_its_session_on_revoke(
        page: Any, shot: Any, api: ApiServer, admin: str, client: httpx.Client) -> None:
    theirs = create(client, admin, name="org-2 exporter", organization_id="org-2", scopes=["read:export"])
    ours = create(client, admin, name="org-1 ingest", organization_id="org-1", scopes=["write:data"])
    org_admin = create(client, admin, name="org-1 admin", organization_id="org-1", scopes=["admin:apikeys"])
    sign_in(page, api, org_admin["secret"])
    listing = page.locator("table.keys").inner_text()
    assert "org-1 ingest" in listing and "org-2 exporter" not in listing
    assert page.get_by_label("Organization").count() == 0  # no organization filter either
    shot(page, "org-keys")
    page.goto(f"{api.url}/dashboard/keys/{theirs['id']}")
    assert page.get_by_role("heading", name="Not found").is_visible()
    shot(page, "other-org")
    page.goto(f"{api.url}/dashboard/keys/{ours['id']}")
    assert page.get_by_role("heading", name="org-1 ingest").is_visible()

    revoked = client.post(f"/v1/keys/{org_admin['id']}/revoke", headers={"x-api-key": admin})
    assert revoked.status_code == 200
    page.reload()
    assert page.get_by_role("button", name="Sign in").is_visible()
    assert page.get_by_text("Your session ended").is_visible()
    shot(page, "session-ended")


def test_a_stale_edit_shows_the_conflict_and_the_current_values(page: Any, shot: Any, api: ApiServer, admin: str,
                                                                client: httpx.Client) -> None:
    key = create(client, admin, name="shared key", description="before", scopes=["read:data"])
    sign_in(page, api, admin)
    page.goto(f"{api.url}/dashboard/keys/{key['id']}")
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Description", exact=True).fill("mine")
    changed = client.patch(f"/v1/keys/{key['id']}", json={"description": "theirs", "tags": ["other-admin"]},
                           headers={"x-api-key": admin, "If-Match": '"1"'})
    assert changed.status_code == 200, changed.text
    page.get_by_role("button", name="Save changes").click()
    conflict = page.get_by_role("alert").filter(has_text="Conflict")
    assert conflict.is_visible() and "theirs" in conflict.inner_text() and "other-admin" in conflict.inner_text()
    shot(page, "conflict")
    now = client.get(f"/v1/keys/{key['id']}", headers={"x-api-key": admin}).json()
    assert (now["description"], now["version"]) == ("theirs", 2)  # never overwritten


def test_the_core_forms_work_without_javascript(browser: Any, shot: Any, api: ApiServer, admin: str,
                                                client: httpx.Client) -> None:
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        sign_in(page, api, admin)
        page.get_by_role("link", name="Create API Key").click()
        page.get_by_label("Name", exact=True).fill("no-script key")
        page.get_by_label("read:data", exact=True).check()
        page.get_by_label("track:events", exact=True).check()
        page.get_by_role("button", name="Create key").click()
        secret = page.get_by_label("Secret", exact=True).input_value()
        assert verify(client, secret, "any-site")["code"] == "VALID"  # global read:data
        page.get_by_role("link", name="I have stored the secret").click()  # no leave confirmation without script
        page.get_by_role("button", name="Revoke").click()
        page.get_by_label("Type the key name to confirm").fill("no-script key")
        page.get_by_role("button", name="Revoke key").click()
        page.get_by_role("heading", name="no-script key").wait_for()
        assert status_word(page) == "Revoked" and verify(client, secret, "any-site")["code"] == "REVOKED"
        shot(page, "revoked-without-script")
    finally:
        context.close()
