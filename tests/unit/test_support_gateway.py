"""A test that needs a Debian package skips without it, saying why, except on CI, where it fails; the
gateway tests run the configurations docs/verify.md shows, which set every header keyledger reads about the
request."""

from __future__ import annotations

import re

import pytest

from tests.support.gateway import caddy_site, documented_block, fill, nginx_locations, require_binary

MISSING = ("keyledger-no-such-binary", "/nonexistent/keyledger-no-such-binary")


def test_a_missing_package_skips_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Debian package nginx"):
        require_binary(MISSING, package="nginx")


def test_on_ci_a_missing_package_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI: keyledger-no-such-binary is not installed"):
        require_binary(MISSING, package="nginx")


def test_an_installed_binary_is_found() -> None:
    assert require_binary(("sh",), package="dash").endswith("sh")


def test_the_documented_nginx_locations_are_filled_in_and_set_the_request_line() -> None:
    nginx = nginx_locations(8080, 9090, "klvc_test")
    assert "proxy_pass http://127.0.0.1:8080/v1/forward-auth?scope=" in nginx
    assert "proxy_pass http://127.0.0.1:9090;" in nginx and 'X-Keyledger-Caller "klvc_test"' in nginx
    auth = nginx[nginx.index("location = /_keyledger"):]
    auth = auth[:auth.index("}")]
    for header in ("X-Forwarded-Method", "X-Forwarded-Uri", "X-Forwarded-For"):
        assert re.search(rf"^ *proxy_set_header {header} +\$", auth, flags=re.MULTILINE), header


def test_the_documented_caddy_site_is_filled_in() -> None:
    caddy = caddy_site(8443, 8080, 9090, "klvc_test")
    assert caddy.startswith("http://127.0.0.1:8443 {") and "forward_auth 127.0.0.1:8080 {" in caddy
    assert "reverse_proxy 127.0.0.1:9090" in caddy and 'X-Keyledger-Caller "klvc_test"' in caddy


def test_the_untested_documented_configurations_keep_what_makes_the_gateway_set_the_headers() -> None:
    assert re.search(r"trustForwardHeader: false\b", documented_block("yaml", "forwardAuth:"))
    assert re.search(r"^use_remote_address: true\b", documented_block("yaml", "ext_authz"), flags=re.MULTILINE)


def test_a_placeholder_missing_from_a_block_is_an_error() -> None:
    with pytest.raises(AssertionError, match="occurs 0 times"):
        fill("proxy_pass http://elsewhere;", {"http://my-service;": "http://127.0.0.1:1;"})
