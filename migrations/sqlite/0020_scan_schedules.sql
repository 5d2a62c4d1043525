-- Scan schedules are monitors of kind 'schedule' (no alerts); existing rows are monitors.
ALTER TABLE rm_monitors ADD COLUMN kind TEXT NOT NULL DEFAULT 'monitor';
CREATE INDEX rm_monitors_kind ON rm_monitors (org_id, kind, created_at);
