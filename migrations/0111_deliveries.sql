-- Notification delivery (issue #25). Every event is queued for fan-out by
-- a trigger, in the transaction that writes it, so no event can be missed
-- whatever order concurrent writers commit in; the daemon's fan-out takes
-- queued events, makes one delivery per Alert that takes the event, and
-- dequeues them. Deliveries are sent one at a time per event across
-- replicas (claimed FOR UPDATE SKIP LOCKED), in event order per Alert and
-- project, retried with backoff, and every attempt is recorded.
-- Additive: older binaries' events are queued too and wait for a newer one.
CREATE TABLE IF NOT EXISTS cpi_notify_queue (
    event_id UUID PRIMARY KEY REFERENCES cpi_events (id) ON DELETE CASCADE
);

CREATE OR REPLACE FUNCTION cpi_events_queue_notify() RETURNS trigger AS $$
BEGIN
    INSERT INTO cpi_notify_queue (event_id) VALUES (NEW.id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS cpi_events_queue_notify ON cpi_events;
CREATE TRIGGER cpi_events_queue_notify AFTER INSERT ON cpi_events
    FOR EACH ROW EXECUTE FUNCTION cpi_events_queue_notify();

CREATE TABLE IF NOT EXISTS cpi_deliveries (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id UUID NOT NULL REFERENCES cpi_events (id) ON DELETE CASCADE,
    alert TEXT NOT NULL,
    project TEXT NULL,
    seq BIGINT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'sent', 'failed', 'suppressed', 'dropped')),
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    last_error TEXT NULL,
    -- The message it went out in: events grouped into one message share it.
    message_id UUID NULL,
    done_at TIMESTAMPTZ NULL,
    UNIQUE (event_id, alert)
);
CREATE INDEX IF NOT EXISTS cpi_deliveries_pending
    ON cpi_deliveries (alert, project, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS cpi_deliveries_sent ON cpi_deliveries (alert, done_at)
    WHERE state = 'sent';

CREATE TABLE IF NOT EXISTS cpi_delivery_attempts (
    id BIGSERIAL PRIMARY KEY,
    delivery_id UUID NOT NULL REFERENCES cpi_deliveries (id) ON DELETE CASCADE,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    ok BOOLEAN NOT NULL,
    error TEXT NULL
);
CREATE INDEX IF NOT EXISTS cpi_delivery_attempts_delivery ON cpi_delivery_attempts (delivery_id);
