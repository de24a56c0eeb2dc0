"""The secret page's copy-paste verify example, pasted into bash as a user would: a key whose website id is
shell (quotes, ``;``, ``$(...)``, backticks) runs no command, and the example still verifies the new key.

The example is taken from the real create response of a real ``keyledger serve`` and run by ``bash -c`` with
the real ``curl`` (a small stand-in script where curl is not installed) against that server."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.asgi import csrf_of
from tests.support.server import ApiServer

pytestmark = pytest.mark.e2e

EXAMPLE = re.compile(r'<pre class="example"[^>]*>(.*?)</pre>', re.S)
# Stands in for curl where it is missing: the options the example uses, the request sent with httpx.
CURL_STAND_IN = """#!{python}
import sys, httpx
args, method, url, headers, body = sys.argv[1:], "GET", None, {{}}, None
while args:
    word = args.pop(0)
    if word == "-s":
        continue
    if word == "-X":
        method = args.pop(0)
    elif word == "-H":
        name, _, value = args.pop(0).partition(":")
        headers[name.strip()] = value.strip()
    elif word == "-d":
        body = args.pop(0)
    elif word.startswith("-"):
        sys.exit("curl stand-in: unknown option " + word)
    else:
        url = word
sys.stdout.write(httpx.request(method, url, headers=headers, content=body, timeout=10).text)
"""


def hostile_ids(marker: Path) -> list[str]:
    """Website ids that run ``touch <marker>`` when pasted unquoted into a shell, in or out of quotes."""
    return [f"site-a' ; touch {marker}-1 ; echo '", f"site-b$(touch {marker}-2)", f"site-c`touch {marker}-3`",
            f'site-d" ; touch {marker}-4 ; echo "']


def create_page(browser: httpx.Client, website_id: str) -> str:
    """The secret page the dashboard answers a create with (the key may read ``website_id``)."""
    token = csrf_of(browser.get("/dashboard/keys/new"))
    made = browser.post("/dashboard/keys", data={
        "csrf_token": token, "name": "pasted example", "access_1_resource": "website",
        "access_1_id": website_id, "access_1_scopes": "read:data"})
    assert made.status_code == 200 and "will not be shown again" in made.text, made.text
    return made.text


def shell_path(tmp_path: Path) -> str:
    """PATH for the pasted example: the real curl, or the stand-in when the machine has none."""
    if shutil.which("curl") is not None:
        return os.environ["PATH"]
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    stand_in = folder / "curl"
    stand_in.write_text(CURL_STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_the_pasted_verify_example_runs_no_injected_command_and_verifies_the_key(
        api: ApiServer, dashboard: httpx.Client, tmp_path: Path) -> None:
    assert api.verify_credential is not None, api.log()
    marker = tmp_path / "injected"
    for website_id in hostile_ids(marker):
        page = create_page(dashboard, website_id)
        found = EXAMPLE.search(page)
        assert found is not None, page
        example = html.unescape(found.group(1))
        secret = re.search(r'id="secret" name="secret" value="([^"]+)"', page)
        assert secret is not None and secret.group(1) in example  # the example verifies the new key itself
        shown = example.replace(secret.group(1), "<the new secret>")  # for messages: no secret in test output
        ran = subprocess.run(["bash", "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env={"PATH": shell_path(tmp_path), "HOME": str(tmp_path),
                                  "VERIFY_CREDENTIAL": api.verify_credential})
        injected = sorted(path.name for path in tmp_path.glob("injected*"))
        assert injected == [], f"the example ran an injected command for {website_id!r}:\n{shown}"
        assert ran.returncode == 0, (shown, ran.stderr)
        answer = json.loads(ran.stdout)
        assert (answer["valid"], answer["code"]) == (True, "VALID"), (shown, answer)
        assert answer["granted_by"]["id"] == website_id.strip()
