"""``examples/protected_service.py`` runs as documented: only a valid key reaches its endpoint."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import httpx
import pytest

from keyledger_client import Access, Keyledger
from tests.support.server import ApiServer

EXAMPLE = Path(__file__).parents[3] / "examples" / "protected_service.py"


async def test_the_example_service_protects_its_endpoint(keyledger_server: ApiServer, verify_credential: str,
                                                         admin_client: Keyledger,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYLEDGER_URL", keyledger_server.url)
    monkeypatch.setenv("KEYLEDGER_VERIFY_CREDENTIAL", verify_credential)
    spec = importlib.util.spec_from_file_location("protected_service", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, example)  # Litestar reads the handler's annotations there
    spec.loader.exec_module(example)
    key = admin_client.create("example", access=[Access(resource="website", id="site-a", scopes=["read:data"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(example.app), base_url="http://example.test") as http:
        ok = await http.get("/websites/site-a/stats", headers={"x-api-key": key.secret})
        assert ok.status_code == 200 and ok.json() == {"website": "site-a", "key_id": key.id}
        assert (await http.get("/websites/site-b/stats", headers={"x-api-key": key.secret})).status_code == 403
        assert (await http.get("/websites/site-a/stats")).json()["code"] == "AUTH_REQUIRED"
    await example.keyledger.aclose()
