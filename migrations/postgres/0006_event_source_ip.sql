-- The address a command came from (API requests), kept on its events for audit.
ALTER TABLE events ADD COLUMN actor_ip TEXT;
