"""A key's history on the dashboard says which networks a change limited it to, or that it lifted them."""

import uuid
from datetime import UTC, datetime

from keyledger.domain.events import AnyEvent, KeyAccessChanged, KeyCreated, event_type
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.http.dashboard.words import event_words

AT = datetime(2030, 1, 1, tzinfo=UTC)


def recorded(event: AnyEvent) -> RecordedEvent:
    return RecordedEvent(global_position=3, event_id=uuid.uuid4(), stream_id="AbCdEfGhIjKl", version=2,
                         type=event_type(event), event=event, metadata=Metadata(actor="admin"), recorded_at=AT)


def test_allowed_networks_in_words() -> None:
    created = KeyCreated(key_id="AbCdEfGhIjKl", at=AT, name="office", secret_hash="h", prefix="kl", start="kl_Ab",
                         allowed_networks=("203.0.113.0/24",))
    assert event_words(recorded(created)) == "Created as “office” with no access, limited to 203.0.113.0/24"
    limited = KeyAccessChanged(key_id="AbCdEfGhIjKl", at=AT, allowed_networks=("203.0.113.0/24", "2001:db8::/32"))
    assert event_words(recorded(limited)) == "Changed: allowed networks set to 203.0.113.0/24, 2001:db8::/32"
    lifted = KeyAccessChanged(key_id="AbCdEfGhIjKl", at=AT, allowed_networks=())
    assert event_words(recorded(lifted)) == "Changed: allowed networks lifted (usable from anywhere)"
    assert event_words(recorded(KeyAccessChanged(key_id="AbCdEfGhIjKl", at=AT, name="n"))) == "Changed: renamed to “n”"
