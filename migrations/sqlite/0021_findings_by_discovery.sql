-- Findings detected by discovery jobs (dns.zone-transfer, dns.dangling-cname): JSON array.
ALTER TABLE rm_findings ADD COLUMN discovery_job_ids TEXT NOT NULL DEFAULT '[]';
