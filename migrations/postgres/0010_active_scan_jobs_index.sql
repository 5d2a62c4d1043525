-- Scan workers look for queued or running jobs, oldest first.
CREATE INDEX rm_scan_jobs_active ON rm_scan_jobs (created_at) WHERE status IN ('queued', 'running');
