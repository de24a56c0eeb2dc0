"""The CLI's time arguments at the edge of what a date can hold: a time whose UTC instant falls before year 1
or after year 9999, or a duration too long to count back or forward, is a one-line usage error (exit 2), never
a traceback, and changes nothing."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli

OUT_OF_RANGE = ["0001-01-01T00:00+14:00", "9999-12-31T23:59:59-14:00", "99999999999d"]


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_out_of_range_times_are_a_usage_error(cli: Cli, moment: str) -> None:
    key_id = cli.json("keys", "create", "--name", "dated", "--scope", "read:data")["id"]
    for args in (["keys", "show", key_id, "--as-of", moment], ["audit", "export", "--from", moment],
                 ["audit", "export", "--to", moment], ["keys", "create", "--name", "far", "--expires", moment]):
        proc = cli.run(*args, expect=2)
        assert "out of range" in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1, proc.stderr
    assert [key["name"] for key in cli.json("keys", "list", "--all")["items"]] == ["dated"]
