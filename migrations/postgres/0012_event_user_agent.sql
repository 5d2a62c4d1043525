-- The User-Agent of the API request that caused an event (NULL for CLI and system commands and
-- for events recorded before it was kept); part of the actor, so part of the hashed envelope.
ALTER TABLE events ADD COLUMN actor_agent TEXT;
