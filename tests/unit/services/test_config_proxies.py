"""KEYLEDGER_TRUSTED_PROXIES: networks, normalized; a clear start-up error for anything else."""

import pytest

from keyledger.services.config import SettingsError, load_settings


def test_unset_trusts_no_proxy() -> None:
    assert load_settings({}).trusted_proxies == ()
    assert load_settings({"KEYLEDGER_TRUSTED_PROXIES": " "}).trusted_proxies == ()


def test_networks_and_addresses_separated_by_commas_or_spaces() -> None:
    settings = load_settings({"KEYLEDGER_TRUSTED_PROXIES": "127.0.0.1/32, 10.0.0.0/8 192.0.2.7,2001:DB8::/32 ::1"})
    assert settings.trusted_proxies == ("127.0.0.1/32", "10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "::1/128")


@pytest.mark.parametrize("value, message", [
    ("proxy.internal", r"'proxy.internal' is not a network \(CIDR\) or address"),
    ("10.0.0.1/8", "has host bits set"),
    ("10.0.0.0/33", "'10.0.0.0/33' is not a network"),
    ("10.0.0.0/8;", "is not a network"),
    ("0.0.0.0/0", "would trust every address"),
    ("::/0", "would trust every address"),
])
def test_bad_networks_are_refused_at_start_up(value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"KEYLEDGER_TRUSTED_PROXIES: .*{message}"):
        load_settings({"KEYLEDGER_TRUSTED_PROXIES": value})
