"""A stack started by a keyledger without the watch role gets the watch's NATS user when it is next reused:
a password in ``credentials.json`` and the user in ``nats.conf``, reloaded by the running server (not
restarted); the watch then connects as itself and reads its own inbox."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import nats
import nats.errors

from keyledger.services.devstack.nats import reload_nats
from keyledger.services.devstack.stack import stack_down, stack_up
from tests.integration.services.devstack.test_nats_inboxes import subscribe_as


async def refused(url: str) -> bool:
    try:
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5)
    except (nats.errors.Error, OSError):
        return True
    await nc.close()
    return False


def test_a_stack_without_the_watch_user_gets_it_when_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "earlier"
    first = stack_up(data_dir, pg_settings={"fsync": "off"})
    try:
        credentials, config_path = data_dir / "credentials.json", data_dir / "nats.conf"
        saved = json.loads(credentials.read_text())
        del saved["nats"]["watch"]  # as written before the watch existed
        credentials.write_text(json.dumps(saved))
        config = json.loads(config_path.read_text())
        config["authorization"]["users"] = [u for u in config["authorization"]["users"] if u["user"] != "watch"]
        config_path.write_text(json.dumps(config))
        pid = json.loads((data_dir / "stack.json").read_text())["nats_pid"]
        reload_nats(pid, data_dir)
        assert asyncio.run(refused(first.nats_role_urls["watch"]))  # the gap, as it was

        again = stack_up(data_dir, pg_settings={"fsync": "off"})  # an upgraded keyledger reuses the stack
        assert json.loads((data_dir / "stack.json").read_text())["nats_pid"] == pid  # not restarted
        password = json.loads(credentials.read_text())["nats"]["watch"]  # a new one
        assert f":{password}@" in again.nats_role_urls["watch"] and f":{password}@" not in first.nats_role_urls["watch"]
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert again.nats_role_urls["sink"] == first.nats_role_urls["sink"]  # the others keep theirs
        assert asyncio.run(subscribe_as(again.nats_role_urls["watch"], ["_INBOX_watch.>"], "_INBOX_watch")) == \
            (set(), True)
        watch = next(u for u in json.loads(config_path.read_text())["authorization"]["users"] if u["user"] == "watch")
        assert "$JS.API.CONSUMER.DURABLE.CREATE.KEYLEDGER_USAGE.watch" in watch["permissions"]["publish"]["allow"]
    finally:
        stack_down(data_dir)
