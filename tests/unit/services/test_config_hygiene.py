"""The hygiene report's settings: days without a use, and the age of a secret, each 1 to 3650."""

import pytest

from keyledger.services.config import SettingsError, load_settings
from keyledger.services.keys.hygiene import hygiene_rules


def test_the_hygiene_thresholds_default_to_30_and_90_days() -> None:
    rules = hygiene_rules(load_settings({}))
    assert (rules.unused_days, rules.rotate_days, rules.expiring_days) == (30, 90, 30)


def test_the_hygiene_thresholds_are_read_from_the_environment() -> None:
    rules = hygiene_rules(load_settings({"KEYLEDGER_HYGIENE_UNUSED_DAYS": "7", "KEYLEDGER_HYGIENE_ROTATE_DAYS": "365"}))
    assert (rules.unused_days, rules.rotate_days) == (7, 365)


@pytest.mark.parametrize("value", ["0", "3651", "-1", "thirty"])
def test_a_threshold_out_of_range_stops_start_up(value: str) -> None:
    with pytest.raises(SettingsError, match="KEYLEDGER_HYGIENE_ROTATE_DAYS"):
        load_settings({"KEYLEDGER_HYGIENE_ROTATE_DAYS": value})
