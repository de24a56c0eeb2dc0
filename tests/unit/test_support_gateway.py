"""A test that needs a Debian package skips without it, saying why, except on CI, where it fails."""

from __future__ import annotations

import pytest

from tests.support.gateway import require_binary

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
