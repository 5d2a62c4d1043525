-- The W3C traceparent of the append that recorded an event (NULL when tracing was off), and of
-- the event a delivery carries, so that its attempts join the trace that caused it. Operational
-- like `position`: not part of the hashed envelope.
ALTER TABLE events ADD COLUMN traceparent TEXT;
ALTER TABLE deliveries ADD COLUMN traceparent TEXT;
