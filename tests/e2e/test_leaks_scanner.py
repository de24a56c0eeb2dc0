"""``keyledger leaks scan`` on real files and a real git repository made by the test: tokens in a file and in an
old commit are found, a look-alike with a bad checksum is not, no whole secret is printed, and ``--report``
gets a live key revoked; the ``keyledger-leaks`` hook this repository ships refuses a commit that adds a
token, run by the real ``pre-commit`` framework (as a local hook: nothing is fetched)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import yaml  # type: ignore[import-untyped,unused-ignore]

from keyledger.domain import token
from tests.support.api import create, verify
from tests.support.paths import REPO_ROOT
from tests.support.server import StartServer
from tests.support.wait import until_sync

BIN = Path(sys.executable).parent


def look_alike(real: str) -> str:
    return real[:-1] + ("A" if real[-1] != "A" else "B")


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"), "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert not check or done.returncode == 0, done.stdout + done.stderr
    return done


def new_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "commit.gpgsign", "false")
    return path


def scan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyledger.services.cli", "leaks", "scan", *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)


def test_the_scanner_finds_tokens_in_files_and_history_and_reports_them(start_server: StartServer,
                                                                        tmp_path: Path) -> None:
    api = start_server()
    assert api.bootstrap_secret is not None, api.log()
    with httpx.Client(base_url=api.url, timeout=10) as client:
        in_file, in_history = (create(client, api.bootstrap_secret, scopes=["read:data"]) for _ in range(2))
        repo = new_repo(tmp_path / "repo")
        (repo / "app.py").write_text("import os\n\nAPI_KEY = os.environ.get('K', '')\n")
        (repo / "old.env").write_text(f"# old settings\nKEYLEDGER_KEY={in_history['secret']}\n")
        git(repo, "add", ".")
        git(repo, "commit", "-q", "-m", "settings")
        git(repo, "rm", "-q", "old.env")
        git(repo, "commit", "-q", "-m", "no settings in the repository")
        (repo / "config").mkdir()
        (repo / "config" / "local.toml").write_text(f'[api]\nurl = "x"\nkey = "{in_file["secret"]}"\n')
        (repo / "notes.md").write_text(f"a look-alike: {look_alike(in_file['secret'])}\n")
        (repo / "blob.bin").write_bytes(b"\0\1" + in_file["secret"].encode())

        files_only = scan(str(repo))
        assert files_only.returncode == 1, files_only.stderr
        start = token.parse(in_file["secret"]).start()
        assert files_only.stdout.splitlines() == [
            f"{repo}/config/local.toml:3: {start}… (key {in_file['id']}, checksum valid)"]

        with_history = scan(str(repo), "--git", "--json")
        assert with_history.returncode == 1, with_history.stderr
        found = json.loads(with_history.stdout)["findings"]
        assert [(f["path"].removeprefix(f"{repo}/"), f["line"], f["key_id"], f["commit"] is not None)
                for f in found] == [("config/local.toml", 3, in_file["id"], False),
                                    ("old.env", 2, in_history["id"], True)]
        for output in (files_only, with_history):
            for secret in (in_file["secret"], in_history["secret"]):
                assert secret not in output.stdout + output.stderr and secret[-30:] not in output.stdout

        (repo / "config" / "local.toml").write_text("nothing here\n")
        assert scan(str(repo)).returncode == 0  # the look-alike and the binary file are no finding

        reported = scan(str(repo), "--git", "--report", api.url)
        assert reported.returncode == 1 and "reported 1 of 1 token(s)" in reported.stderr, reported.stderr
        until_sync(lambda: verify(client, in_history["secret"], "read:data")["code"] == "REVOKED", timeout=20,
                   what="the reported key to be revoked")
        shown = client.get(f"/v1/keys/{in_history['id']}", headers={"x-api-key": api.bootstrap_secret}).json()
        assert shown["revoke_reason"].startswith("leaked: reported by scanner at ")
        assert shown["revoke_reason"].endswith(":old.env")
        assert verify(client, in_file["secret"], "read:data")["code"] == "VALID"  # not reported: no longer found


def test_the_pre_commit_hook_refuses_a_commit_that_adds_a_token(tmp_path: Path) -> None:
    (shipped,) = yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())
    assert shipped["id"] == "keyledger-leaks" and shipped["language"] == "python"
    # the shipped hook as a local one: pre-commit installs nothing and runs the entry from this environment
    local = {**shipped, "language": "system"}
    repo = new_repo(tmp_path / "project")
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    (repo / "README.md").write_text("a project\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "start")
    done = subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=repo, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")})
    assert done.returncode == 0, done.stdout + done.stderr

    secret = token.generate(secrets.token_bytes)
    (repo / "settings.py").write_text(f"KEY = '{secret}'\n")
    (repo / "other.py").write_text(f"LOOKS_LIKE = '{look_alike(token.generate(secrets.token_bytes))}'\n")
    git(repo, "add", "settings.py", "other.py")
    refused = git(repo, "commit", "-m", "add settings", check=False)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    output = refused.stdout + refused.stderr
    assert "keyledger leaked keys" in output and "Failed" in output
    assert f"settings.py:1: {token.parse(secret).start()}…" in output and "other.py" not in output
    assert secret not in output
    assert git(repo, "rev-list", "--count", "HEAD").stdout.strip() == "1"  # nothing was committed

    (repo / "settings.py").write_text("import os\nKEY = os.environ['KEY']\n")
    git(repo, "add", "settings.py")
    git(repo, "commit", "-q", "-m", "settings from the environment")  # without the token it goes through
    assert git(repo, "rev-list", "--count", "HEAD").stdout.strip() == "2"


def test_the_detect_secrets_plugin_reports_tokens_and_no_look_alikes(tmp_path: Path) -> None:
    plugin = subprocess.run([sys.executable, "-m", "keyledger.services.leaks.detect_secrets_plugin"],
                            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    key, credential = token.generate(secrets.token_bytes), token.generate(secrets.token_bytes, "klvc")
    (tmp_path / "settings.py").write_text(f"import os\n\nKEY = '{key}'\nCALLER = 'Bearer {credential}'\n")
    (tmp_path / "other.py").write_text(f"LOOKS_LIKE = '{look_alike(token.generate(secrets.token_bytes))}'\n")
    done = subprocess.run([str(BIN / "detect-secrets"), "scan", "--plugin", plugin, "settings.py", "other.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    ours = {(name, r["line_number"]) for name, found in results.items() for r in found
            if r["type"] == "keyledger API key"}
    assert ours == {("settings.py", 3), ("settings.py", 4)}
    assert key not in done.stdout and credential not in done.stdout


def test_the_gitleaks_rule_in_the_docs_matches_tokens() -> None:
    import re
    import tomllib

    (rule,) = tomllib.loads((REPO_ROOT / "docs" / "gitleaks.toml").read_text())["rules"]
    pattern = re.compile(rule["regex"])  # RE2 (gitleaks) and Python agree on this one
    key, credential = token.generate(secrets.token_bytes), token.generate(secrets.token_bytes, "klvc")
    for secret in (key, credential):
        found = pattern.search(f'token: "{secret}"')
        assert found is not None and found.group(rule["secretGroup"]) == secret
        assert any(keyword in secret for keyword in rule["keywords"])
    assert pattern.search("kl_" + "A" * 49) is None and pattern.search(f"x{key}") is None
