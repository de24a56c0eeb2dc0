"""What the dashboard draws and says: hourly buckets, chart labels, access and events in words, and which
form field a refusal belongs to."""

from datetime import UTC, datetime, timedelta

from keyledger.domain.access import AccessEntry
from keyledger.services.http.dashboard.charts import hourly_chart, hours_ending, per_hour, sparkline
from keyledger.services.http.dashboard.forms import field_of
from keyledger.services.http.dashboard.words import SCOPE_GROUPS, SCOPE_NAMES, access_words

NOW = datetime(2030, 1, 2, 10, 30, tzinfo=UTC)


def test_counts_land_in_their_utc_hour_and_old_ones_are_left_out() -> None:
    hours = hours_ending(NOW, 24)
    assert hours[-1] == datetime(2030, 1, 2, 10, tzinfo=UTC) and hours[0] == hours[-1] - timedelta(hours=23)
    rows = [(hours[-1], "VALID", 5), (hours[-1], "FORBIDDEN", 2), (hours[0], "VALID", 1),
            (hours[0] - timedelta(hours=1), "VALID", 100)]
    buckets = per_hour(rows, hours)
    assert buckets[-1] == {"VALID": 5, "FORBIDDEN": 2} and buckets[0] == {"VALID": 1} and sum(map(len, buckets)) == 3
    assert 'aria-label="8 verifications in the last 24 hours"' in sparkline(rows, NOW)
    chart, totals = hourly_chart(rows, NOW, 24)
    assert totals == {"VALID": 6, "FORBIDDEN": 2} and "2 FORBIDDEN, 6 VALID" in chart
    assert chart.count("<rect") == 3


def test_chart_text_from_the_trail_is_escaped() -> None:
    chart, _ = hourly_chart([(NOW, "<script>", 1)], NOW, 24)
    assert "<script>" not in chart and "&lt;script&gt;" in chart


def test_the_documents_fifteen_scopes_in_four_groups() -> None:
    assert len(SCOPE_NAMES) == len(set(SCOPE_NAMES)) == 15
    assert [group for group, _ in SCOPE_GROUPS] == ["Data access", "Feature-specific", "Administrative",
                                                     "Rate limiting"]


def test_access_in_words() -> None:
    entries = (AccessEntry(resource="global", scopes=("admin:apikeys",)),
               AccessEntry(resource="website", id="site-a", scopes=("read:data", "write:data")),
               AccessEntry(resource="error_data", scopes=("read:analytics",)))
    assert access_words(entries) == ["admin:apikeys on every resource (global)", "read:data on website site-a",
                                     "write:data on website site-a", "read:analytics on error_data"]


def test_refusals_go_beside_their_field() -> None:
    assert field_of("name must not be empty") == "name"
    assert field_of("description longer than 1000 characters") == "description"
    assert field_of("tag 'x y' may use only a-z") == "tags"
    assert field_of("unknown scope 'read:all'") == "scopes"
    assert field_of("a website access entry needs the website id") == "access"
    assert field_of("rate_limit must be between 1 and 10000000 requests per minute") == "rate_limit"
    assert field_of("expires_at must be in the future") == "expires_at"
    assert field_of("cannot grant admin:users: the granting key does not hold it") == "general"
