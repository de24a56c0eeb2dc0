"""``/metrics`` of every process kind of a real ``keyledger serve``: the API workers (two of them, so a
scrape must add up both workers' counters) and the relay, projector and audit sink on their own ports.
The counters must move by exactly the traffic the test sent."""

from __future__ import annotations

import httpx
import pytest

from tests.support.api import create
from tests.support.metrics import Samples, scrape, value, worker_metrics_urls
from tests.support.server import ApiServer, StartServer
from tests.support.wait import until_sync


@pytest.fixture
def served(start_server: StartServer) -> ApiServer:
    """Two API workers with verify closed (callers present the verify credential)."""
    return start_server(processes=2, extra_env={"KEYLEDGER_VERIFY_OPEN": ""})


def _verify(client: httpx.Client, credential: str, key: str) -> str:
    response = client.post("/v1/verify", json={"key": key, "scope": "read:data"},
                           headers={"Authorization": f"Bearer {credential}"})
    assert response.status_code == 200, response.text
    return str(response.json()["code"])


def test_metrics_need_a_credential_even_when_verify_is_open(start_server: StartServer) -> None:
    api = start_server()  # KEYLEDGER_VERIFY_OPEN=1
    assert httpx.get(f"{api.url}/metrics").status_code == 401
    assert httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer kl_wrong"}).status_code == 401
    assert api.bootstrap_secret is not None
    scrape(f"{api.url}/metrics", api.bootstrap_secret)  # an admin key may scrape


def test_every_process_kind_counts_the_traffic_it_handled(served: ApiServer) -> None:
    credential, admin = served.verify_credential, served.bootstrap_secret
    assert credential and admin, served.log()
    until_sync(lambda: len(worker_metrics_urls(served.log())) == 3, timeout=30, interval=0.1,
               what="each worker to print its metrics port", explain=served.log)
    urls = worker_metrics_urls(served.log())
    api_url = f"{served.url}/metrics"
    before, workers_before = scrape(api_url, credential), {role: scrape(url) for role, url in urls.items()}

    with httpx.Client(base_url=served.url, timeout=10) as client:
        key = create(client, admin, scopes=["read:data"])
        codes = [_verify(client, credential, key["secret"]) for _ in range(6)]
        codes += [_verify(client, credential, "kl_not-a-key"), _verify(client, credential, "nonsense")]
        revoked = client.post(f"/v1/keys/{key['id']}/revoke", json={}, headers={"x-api-key": admin})
        assert revoked.status_code == 200, revoked.text
        codes.append(_verify(client, credential, key["secret"]))
    assert codes.count("VALID") == 6 and codes[-1] == "REVOKED", codes

    def moved(after: Samples, name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    after = scrape(api_url, credential)  # whichever worker answers, it reads both workers' samples
    for code in ("VALID", "REVOKED"):
        assert moved(after, "keyledger_verify_answers_total", code=code) == codes.count(code), code
    assert moved(after, "keyledger_verify_answers_total", code="MALFORMED") + \
        moved(after, "keyledger_verify_answers_total", code="NOT_FOUND") == 2
    assert moved(after, "keyledger_verify_seconds_count") == len(codes)
    for command in ("create", "revoke"):
        assert moved(after, "keyledger_command_seconds_count", command=command, status="2xx") == 1, command
    assert moved(after, "keyledger_rate_limit_decisions_total", decision="allowed") >= 6 + 2  # verifies + commands
    assert moved(after, "keyledger_argon2_seconds_count") >= 1  # the new key's first check (and its hashing)
    assert value(after, "keyledger_nats_connected", process="api") == 1
    assert value(after, "keyledger_postgres_up", process="api") == 1
    # gauges: each worker samples its own every 2 s; the position is the lowest of the two workers
    until_sync(lambda: value(scrape(api_url, credential), "keyledger_cache_position") >= 3, timeout=15,
               interval=0.2, what="both workers' key caches to report the bootstrap key, the create and the revoke")

    # every request above left a usage event: they leave the API, and the audit sink stores them
    requests = len(codes) + 2
    until_sync(lambda: moved(scrape(api_url, credential), "keyledger_usage_events_total", outcome="published")
               >= requests, timeout=15, interval=0.2, what="the usage events to be published")

    def worker_moved(role: str, name: str, **labels: str) -> float:
        return value(scrape(urls[role]), name, **labels) - value(workers_before[role], name, **labels)

    until_sync(lambda: worker_moved("relay", "keyledger_relay_published_total") >= 2, timeout=15, interval=0.2,
               what="the relay to count the create and the revoke")
    until_sync(lambda: worker_moved("projector", "keyledger_consumer_messages_total",
                                    worker="key-cache-projector") >= 2,
               timeout=15, interval=0.2, what="the projector to count both events")
    until_sync(lambda: worker_moved("audit-sink", "keyledger_sink_stored_events_total") >= requests,
               timeout=15, interval=0.2, what="the audit sink to count the stored usage events")
    relay, sink = scrape(urls["relay"]), scrape(urls["audit-sink"])
    assert value(relay, "keyledger_relay_batch_events_count") >= 1
    assert value(sink, "keyledger_consumer_batch_messages_count", worker="audit-sink") >= 1
    assert value(sink, "keyledger_consumer_lag_messages", worker="audit-sink") >= 0
    until_sync(lambda: value(scrape(urls["relay"]), "keyledger_relay_lag_events") == 0, timeout=15, interval=0.2,
               what="the relay's lag to be 0 once it has published everything")
    assert value(relay, "keyledger_postgres_up", process="relay") == 1
    assert value(relay, "keyledger_nats_connected", process="relay") == 1
