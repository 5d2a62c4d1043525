-- A group's summary and an asset's scans find the jobs of an asset without walking the
-- organization's.
CREATE INDEX rm_scan_jobs_asset ON rm_scan_jobs (asset_id, created_at);
