"""The watch's settings: KEYLEDGER_FINDINGS_<THRESHOLD> for each threshold (the issue's numbers by default)
and KEYLEDGER_FINDINGS_AUTO_REVOKE (off by default); a clear start-up error for anything else."""

import pytest

from keyledger.domain.findings import Thresholds
from keyledger.services.config import SettingsError, load_settings


def test_the_defaults_are_the_documented_thresholds_and_no_auto_revoke() -> None:
    settings = load_settings({})
    assert settings.findings == Thresholds() and settings.findings_auto_revoke == ()
    limits = settings.findings
    assert (limits.new_network_uses, limits.new_network_days, limits.many_networks, limits.many_networks_minutes,
            limits.secret_guessing, limits.secret_guessing_minutes, limits.scope_probing, limits.scope_probing_targets,
            limits.scope_probing_minutes, limits.volume_spike_factor, limits.volume_spike_days,
            limits.volume_spike_history_hours) == (20, 30, 20, 10, 10, 5, 10, 3, 5, 10, 7, 24)


def test_each_threshold_has_its_variable() -> None:
    settings = load_settings({"KEYLEDGER_FINDINGS_MANY_NETWORKS": "5", "KEYLEDGER_FINDINGS_SECRET_GUESSING": " 3 ",
                              "KEYLEDGER_FINDINGS_NETWORKS_KEPT": "1000"})
    assert (settings.findings.many_networks, settings.findings.secret_guessing) == (5, 3)
    assert settings.findings.networks_kept == 1000 and settings.findings.scope_probing == 10


@pytest.mark.parametrize("value", ["0", "-1", "ten", "1.5", "²", "1000001"])
def test_a_threshold_must_be_a_whole_number_from_one(value: str) -> None:
    with pytest.raises(SettingsError, match="KEYLEDGER_FINDINGS_SCOPE_PROBING must be a whole number"):
        load_settings({"KEYLEDGER_FINDINGS_SCOPE_PROBING": value})


def test_auto_revoke_names_kinds_of_finding() -> None:
    settings = load_settings({"KEYLEDGER_FINDINGS_AUTO_REVOKE": "many_networks, revoked_key_used many_networks"})
    assert settings.findings_auto_revoke == ("many_networks", "revoked_key_used")
    with pytest.raises(SettingsError, match="'leaked' is no kind of finding; the kinds are revoked_key_used, "):
        load_settings({"KEYLEDGER_FINDINGS_AUTO_REVOKE": "many_networks,leaked"})
