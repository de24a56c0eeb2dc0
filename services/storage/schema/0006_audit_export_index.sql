-- The compliance export merges usage and lifecycle events in time order; with this index
-- Postgres streams lifecycle events by time instead of sorting them all first.
CREATE INDEX events_recorded_at ON events (recorded_at, event_id);
