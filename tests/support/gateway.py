"""A real nginx in front of a tiny upstream, using keyledger's ``/v1/forward-auth`` (e2e tests).

nginx runs from the Debian package (``make install`` installs it as root), on a free port, with its
config, temporary folders, pid and logs in a folder of the test's own. The upstream echoes the headers it
was given and counts its requests, so a test can tell whether a refused request ever reached it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port, stop_process
from tests.support.wait import until_sync

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")


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


NGINX_CONF = """\
# keyledger forward-auth in front of an upstream (README "Gateways"); paths are the test's own
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

        location /api/ {{
            auth_request /_keyledger;
            # what keyledger answered, for the upstream and for the client
            auth_request_set $kl_key_id       $upstream_http_x_keyledger_key_id;
            auth_request_set $kl_organization $upstream_http_x_keyledger_organization_id;
            auth_request_set $kl_scopes       $upstream_http_x_keyledger_scopes;
            auth_request_set $kl_limit        $upstream_http_x_ratelimit_limit;
            auth_request_set $kl_remaining    $upstream_http_x_ratelimit_remaining;
            auth_request_set $kl_reset        $upstream_http_x_ratelimit_reset;
            auth_request_set $kl_retry_after  $upstream_http_retry_after;
            auth_request_set $kl_status       $upstream_status;
            # set, never passed through: a client's own X-Keyledger-* headers do not reach the upstream
            proxy_set_header X-Keyledger-Key-Id          $kl_key_id;
            proxy_set_header X-Keyledger-Organization-Id $kl_organization;
            proxy_set_header X-Keyledger-Scopes          $kl_scopes;
            add_header X-RateLimit-Limit     $kl_limit always;
            add_header X-RateLimit-Remaining $kl_remaining always;
            add_header X-RateLimit-Reset     $kl_reset always;
            # auth_request passes only 401 and 403 on (without keyledger's body), anything else is a 500:
            # answer each with the structured body, and turn the 500 of a 429 back into a 429
            error_page 401 = @keyledger_401;
            error_page 403 = @keyledger_403;
            error_page 500 = @keyledger_other;
            proxy_pass http://127.0.0.1:{upstream_port};
        }}

        location = /_keyledger {{
            internal;
            proxy_pass http://127.0.0.1:{keyledger_port}/v1/forward-auth?scope=read:data&website_id=site-a;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Keyledger-Caller "{credential}";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}

        location @keyledger_401 {{
            add_header X-RateLimit-Limit     $kl_limit always;
            add_header X-RateLimit-Remaining $kl_remaining always;
            add_header X-RateLimit-Reset     $kl_reset always;
            return 401 '{{"success":false,"error":"Authentication required","code":"AUTH_REQUIRED"}}';
        }}
        location @keyledger_403 {{
            add_header X-RateLimit-Limit     $kl_limit always;
            add_header X-RateLimit-Remaining $kl_remaining always;
            add_header X-RateLimit-Reset     $kl_reset always;
            return 403 '{{"success":false,"error":"Insufficient permissions","code":"FORBIDDEN"}}';
        }}
        location @keyledger_other {{
            add_header X-RateLimit-Limit     $kl_limit always;
            add_header X-RateLimit-Remaining $kl_remaining always;
            add_header X-RateLimit-Reset     $kl_reset always;
            add_header Retry-After           $kl_retry_after always;
            if ($kl_status = 429) {{
                return 429 '{{"success":false,"error":"Rate limit exceeded","code":"RATE_LIMITED"}}';
            }}
            return 503 '{{"success":false,"error":"the key service is unavailable; retry later","code":"UNAVAILABLE"}}';
        }}
    }}
}}
"""


class Nginx:
    """nginx (one process, in the foreground) with :data:`NGINX_CONF` on a free port."""

    def __init__(self, binary: str, folder: Path, keyledger_port: int, upstream_port: int, credential: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=folder, port=self.port, upstream_port=upstream_port,
                                          keyledger_port=keyledger_port, credential=credential))
        self._log = (folder / "stdout.log").open("w")
        self.process = subprocess.Popen(
            [binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log"),
             "-g", "daemon off; master_process off;"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        until_sync(self._up, timeout=15, interval=0.05, what=f"nginx on port {self.port}", explain=self.log)

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"nginx exited with {self.process.returncode}:\n{self.log()}")
        try:
            httpx.get(f"{self.url}/healthz-of-nginx", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        """nginx's own output and its error log."""
        error_log = self.folder / "error.log"
        return (self.folder / "stdout.log").read_text(errors="replace") + (
            error_log.read_text(errors="replace") if error_log.exists() else "")

    def stop(self) -> None:
        """Stop nginx (SIGTERM, then SIGKILL)."""
        stop_process(self.process, grace=10)
        self._log.close()
