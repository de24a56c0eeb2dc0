"""The OpenAPI document is good enough for a generated client in another language: TypeScript types from a
real server's ``/schema`` (openapi-typescript), a small program using them through openapi-fetch,
type-checked with ``tsc --strict`` and run with node against the same server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.paths import REPO_ROOT
from tests.support.server import ApiServer

PROJECT = REPO_ROOT / "clients" / "typescript"
TOOLS = PROJECT / "node_modules" / ".bin"


def node_tools() -> str:
    """The node binary, once ``make install`` has installed the npm packages; else skip (fail under CI)."""
    node = shutil.which("node")
    if node is not None and (TOOLS / "openapi-typescript").exists() and (TOOLS / "tsc").exists():
        return node
    reason = ("node and the npm packages of clients/typescript are not installed "
              "(`make install` runs `npm ci` there when npm is on the machine)")
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(240)
def test_a_generated_typescript_client_works(api: ApiServer, admin: str, client: httpx.Client,
                                             tmp_path: Path) -> None:
    node = node_tools()
    (tmp_path / "schema.json").write_text(client.get("/schema/openapi.json").text)
    for name in ("check.ts", "tsconfig.json", "package.json"):
        shutil.copy(PROJECT / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(PROJECT / "node_modules")
    # request fields with a default (description, tags) stay optional: openapi-typescript 7 would make them required
    run(str(TOOLS / "openapi-typescript"), "schema.json", "-o", "keyledger.ts", "--default-non-nullable", "false",
        cwd=tmp_path)
    run(str(TOOLS / "tsc"), "-p", ".", "--outDir", "build", cwd=tmp_path)  # --strict: the types must fit
    out = json.loads(run(node, "build/check.js", cwd=tmp_path,
                         env={"KEYLEDGER_URL": api.url, "KEYLEDGER_ADMIN": admin}))
    key_id = out["key_id"]
    assert out["verify"] == {"valid": True, "code": "VALID", "key_id": key_id, "remaining": 99,
                             "granted_by": {"resource": "website", "id": "site-a", "scopes": ["read:data"]}}
    assert out["other"] == "FORBIDDEN" and out["listed"] is True
    assert out["changed"] == {"name": "renamed from typescript", "version": 2, "etag": '"2"'}
    assert out["stale"] == {"status": 409, "code": "CONFLICT"}
    assert out["forward_auth"] == {"status": 200, "key_id": key_id}
