"""Times at the edge of what a date can hold (year 1 east of UTC, year 9999 west of it): a real
``keyledger serve`` answers each with a clear 400 (the form's message on a dashboard page, the structured
``VALIDATION_ERROR`` body on the API), never a 500, and keeps serving."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from keyledger.services.devstack.stack import StackInfo
from tests.support.api import create
from tests.support.asgi import csrf_of
from tests.support.module_server import module_server, root_key
from tests.support.server import ApiServer

pytestmark = pytest.mark.e2e

FORM_MESSAGE = "Give a date and time, e.g. 2031-01-31T12:00 (UTC)"
# Times whose UTC instant lies before year 1 or after year 9999, though they are written within them (the API
# takes RFC 3339 times, with seconds; the dashboard's datetime-local fields may leave them out).
OUT_OF_RANGE = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+23:59"]
FORM_OUT_OF_RANGE = ["0001-01-01T00:00+14:00", "9999-12-31T23:59-14:00", *OUT_OF_RANGE]


@pytest.fixture(scope="module")
def api(servers: tuple[str, str], stack_info: StackInfo | None,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process for the module: each case checks for itself that it was refused and changed nothing."""
    with module_server(servers, stack_info, tmp_path_factory, "dates") as server:
        yield server


@pytest.fixture(scope="module")
def admin(api: ApiServer) -> str:
    """A global admin key that may call as often as the module's cases do together."""
    return root_key(api)


@pytest.mark.parametrize("moment", FORM_OUT_OF_RANGE)
def test_dashboard_pages_answer_an_out_of_range_time_with_the_forms_message(
        dashboard: httpx.Client, client: httpx.Client, admin: str, moment: str) -> None:
    key_id = create(client, admin, name="dated", scopes=["read:data"])["id"]
    pages = [("/dashboard/audit", "from_"), ("/dashboard/audit", "to"), (f"/dashboard/keys/{key_id}", "from_"),
             (f"/dashboard/keys/{key_id}", "to"), (f"/dashboard/keys/{key_id}", "as_of")]
    for path, name in pages:
        page = dashboard.get(path, params={name: moment})
        assert (page.status_code, FORM_MESSAGE in page.text) == (400, True), (path, name, page.status_code, page.text)
    for name in ("from_", "to"):
        export = dashboard.get("/dashboard/audit/export", params={name: moment})
        assert (export.status_code, FORM_MESSAGE in export.text) == (400, True), (name, export.text)
    token = csrf_of(dashboard.get("/dashboard/keys/new"))
    made = dashboard.post("/dashboard/keys", data={"csrf_token": token, "name": "far off",
                                                   "scope": "read:data", "expires_at": moment})
    assert (made.status_code, FORM_MESSAGE in made.text) == (400, True), made.text
    assert "far off" not in client.get("/v1/keys", headers={"x-api-key": admin}).text  # nothing was created
    assert dashboard.get("/dashboard/audit").status_code == 200  # and the server goes on serving


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_api_audit_and_export_answer_an_out_of_range_time_with_a_validation_error(
        client: httpx.Client, auditor: str, moment: str) -> None:
    for path in ("/v1/audit", "/v1/audit/export"):
        for name in ("from", "to"):
            answer = client.get(path, params={name: moment}, headers={"x-api-key": auditor})
            assert answer.status_code == 400, (path, name, answer.status_code, answer.text)
            body = answer.json()
            assert (body["success"], body["code"]) == (False, "VALIDATION_ERROR"), body
            assert body["error"].startswith(f"{name}: time ") and "out of range" in body["error"], body
    assert client.get("/v1/audit", headers={"x-api-key": auditor}).status_code == 200
