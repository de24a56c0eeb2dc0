"""A real nginx or Caddy in front of a tiny upstream, using keyledger's ``/v1/forward-auth`` (e2e tests).

Each runs from its Debian package (``make install`` installs them as root), on a free port, with the
configuration the docs show (read from docs/verify.md, with this test's addresses and credential filled
in), and its temporary folders, state and logs in a folder of the test's own. The upstream echoes the
headers it was given and counts its requests, so a test can tell whether a refused request ever reached it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port, stop_process
from tests.support.wait import until_sync

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")
CADDY_CANDIDATES = ("caddy", "/usr/bin/caddy")


def require_binary(names: tuple[str, ...], package: str) -> str:
    """The path of the first of ``names`` installed; else skip (one line saying why), or fail under CI,
    where every Debian package the suite needs must be there (``make install`` installs it as root)."""
    for name in names:
        found = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if found:
            return found
    reason = f"{names[0]} is not installed (Debian package {package}; `make install` installs it when run as root)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


class EchoUpstream:
    """An HTTP server answering every request with the JSON of its method, path and headers."""

    def __init__(self) -> None:
        self.hits: list[dict[str, object]] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                seen: dict[str, object] = {"method": self.command, "path": self.path,
                                           "headers": {k.lower(): v for k, v in self.headers.items()}}
                hits.append(seen)
                body = json.dumps(seen).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


GATEWAYS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "verify.md"
"""The docs page whose section "Gateways: forward-auth" holds the gateway configurations."""


def documented_block(language: str, marker: str) -> str:
    """The fenced ``language`` block of :data:`GATEWAYS_PAGE` holding ``marker``: a documented gateway
    configuration, which the tests run as it is written."""
    text = GATEWAYS_PAGE.read_text()
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
    found: list[str] = [block for block in blocks if marker in block]
    if len(found) != 1:
        raise AssertionError(f"docs/verify.md has {len(found)} ```{language} blocks holding {marker!r}, not one")
    return found[0]


def fill(block: str, values: dict[str, str]) -> str:
    """``block`` with each placeholder (a key of ``values``, which must occur exactly once) replaced."""
    for placeholder, value in values.items():
        if block.count(placeholder) != 1:
            raise AssertionError(f"{placeholder!r} occurs {block.count(placeholder)} times in the block, not once")
        block = block.replace(placeholder, value)
    return block


def nginx_locations(keyledger_port: int, upstream_port: int, credential: str) -> str:
    """The documented nginx locations, pointed at this test's keyledger and upstream, with its credential."""
    return fill(documented_block("nginx", "location = /_keyledger"), {
        "http://my-service;": f"http://127.0.0.1:{upstream_port};",
        "http://keyledger:8080/": f"http://127.0.0.1:{keyledger_port}/",
        '"klvc_..."': f'"{credential}"'})


NGINX_CONF = """\
# around the documented locations (docs/verify.md, "Gateways: forward-auth"); paths are the test's own
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    default_type application/json;

    server {{
        listen 127.0.0.1:{port};

{locations}
    }}
}}
"""


def caddy_site(port: int, keyledger_port: int, upstream_port: int, credential: str) -> str:
    """The documented Caddyfile site, on this test's port (plain HTTP), pointed at this test's keyledger and
    upstream, with its credential."""
    return fill(documented_block("caddyfile", "forward_auth"), {
        "api.example.com {": f"http://127.0.0.1:{port} {{",
        "forward_auth keyledger:8080 {": f"forward_auth 127.0.0.1:{keyledger_port} {{",
        "reverse_proxy my-service:8000": f"reverse_proxy 127.0.0.1:{upstream_port}",
        '"klvc_..."': f'"{credential}"'})


CADDY_GLOBALS = """\
# the test's own global options: no admin endpoint, no HTTPS (so no certificate or ACME traffic), state in
# the test's folder; then the documented site (docs/verify.md, "Gateways: forward-auth")
{{
    admin off
    auto_https off
    storage file_system {dir}/storage
    grace_period 2s
    log {{
        output file {dir}/caddy.log
        level INFO
    }}
}}

"""


class Gateway:
    """A gateway process in the foreground, on a free port, with its files in a folder of the test's own."""

    name = "gateway"

    def __init__(self, folder: Path, command: list[str], env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self._log = (folder / "stdout.log").open("w")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
        until_sync(self._up, timeout=15, interval=0.05, what=f"{self.name} on port {self.port}", explain=self.log)

    port: int
    url: str

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
        try:
            httpx.get(f"{self.url}/healthz-of-gateway", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        """The gateway's own output and its log files."""
        logs = [self.folder / "stdout.log", self.folder / "error.log", self.folder / "caddy.log"]
        return "".join(path.read_text(errors="replace") for path in logs if path.exists())

    def stop(self) -> None:
        """Stop the gateway (SIGTERM, then SIGKILL)."""
        stop_process(self.process, grace=10)
        self._log.close()


class Nginx(Gateway):
    """nginx (one process, in the foreground) with the documented locations in :data:`NGINX_CONF`."""

    name = "nginx"

    def __init__(self, binary: str, folder: Path, keyledger_port: int, upstream_port: int, credential: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = folder / "nginx.conf"
        locations = textwrap.indent(nginx_locations(keyledger_port, upstream_port, credential), " " * 8)
        conf.write_text(NGINX_CONF.format(dir=folder, port=self.port, locations=locations))
        super().__init__(folder, [binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log"),
                                  "-g", "daemon off; master_process off;"])


class Caddy(Gateway):
    """Caddy (``caddy run``) with :data:`CADDY_GLOBALS` and the documented site; its home, data and config
    folders are the test's own."""

    name = "caddy"

    def __init__(self, binary: str, folder: Path, keyledger_port: int, upstream_port: int, credential: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = folder / "Caddyfile"
        conf.write_text(CADDY_GLOBALS.format(dir=folder)
                        + caddy_site(self.port, keyledger_port, upstream_port, credential))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
               "XDG_DATA_HOME": str(folder / "data"), "XDG_CONFIG_HOME": str(folder / "config")}
        super().__init__(folder, [binary, "run", "--config", str(conf), "--adapter", "caddyfile"], env=env)
