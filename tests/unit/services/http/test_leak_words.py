"""A key's history on the dashboard says who reported a leak and where (never a secret)."""

import uuid
from datetime import UTC, datetime

from keyledger.domain.events import KeyLeakReported
from keyledger.domain.recorded import Metadata, RecordedEvent
from keyledger.services.http.dashboard.words import event_words

AT = datetime(2030, 1, 1, tzinfo=UTC)


def recorded(event: KeyLeakReported) -> RecordedEvent:
    return RecordedEvent(global_position=3, event_id=uuid.uuid4(), stream_id="AbCdEfGhIjKl", version=2,
                         type="key.leak_reported", event=event, metadata=Metadata(actor="leak-intake"), recorded_at=AT)


def test_a_leak_report_in_words() -> None:
    event = KeyLeakReported(key_id="AbCdEfGhIjKl", at=AT, source="github", url="https://github.com/o/r",
                            reported_at=AT)
    assert event_words(recorded(event)) == "Leak reported by github at https://github.com/o/r"
    old = KeyLeakReported(key_id="AbCdEfGhIjKl", at=AT, source="public", reported_at=AT, ended_grace=True)
    assert event_words(recorded(old)) == "Leak reported by public; the old secret's grace period ended"
