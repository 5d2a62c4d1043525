-- Whether the API shows a finding (some live scan job or a discovery job detected it), as a
-- column the queries filter on and the indexes lead with, instead of comparing JSON lists; and
-- indexes for the list's commonest filters: each query is one organization's (or one asset's).
ALTER TABLE rm_findings ADD COLUMN visible BIGINT NOT NULL DEFAULT 0;
UPDATE rm_findings SET visible = CASE
    WHEN scan_job_ids <> '[]' OR discovery_job_ids <> '[]' THEN 1 ELSE 0 END;
DROP INDEX rm_findings_org;
CREATE INDEX rm_findings_shown ON rm_findings (org_id, visible, last_detected);
CREATE INDEX rm_findings_by_status ON rm_findings (org_id, visible, status, last_detected);
CREATE INDEX rm_findings_by_severity ON rm_findings (org_id, visible, severity, status, last_detected);
CREATE INDEX rm_findings_by_template ON rm_findings (org_id, template_id);
DROP INDEX rm_findings_asset;
CREATE INDEX rm_findings_by_asset ON rm_findings (asset_id, org_id, visible, severity, status);
