-- Findings counted by severity and status per organization, asset and template, kept by the
-- projection with the rows it writes (projections/src/models/finding_totals.rs), so a filtered
-- total is a lookup; a severity rank and indexes ending with the finding's id, so that every
-- sort, numbered page and cursor descends one index.
CREATE TABLE rm_finding_totals (
    org_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (org_id, scope, scope_id, severity, status)
);
INSERT INTO rm_finding_totals (org_id, scope, scope_id, severity, status, n)
    SELECT org_id, 'org', '', severity, status, COUNT(*) FROM rm_findings
    WHERE visible = 1 GROUP BY org_id, severity, status;
INSERT INTO rm_finding_totals (org_id, scope, scope_id, severity, status, n)
    SELECT org_id, 'asset', asset_id, severity, status, COUNT(*) FROM rm_findings
    WHERE visible = 1 GROUP BY org_id, asset_id, severity, status;
INSERT INTO rm_finding_totals (org_id, scope, scope_id, severity, status, n)
    SELECT org_id, 'template', template_id, severity, status, COUNT(*) FROM rm_findings
    WHERE visible = 1 GROUP BY org_id, template_id, severity, status;
ALTER TABLE rm_findings ADD COLUMN severity_rank BIGINT NOT NULL DEFAULT 0;
UPDATE rm_findings SET severity_rank = CASE severity
    WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END;
DROP INDEX rm_findings_shown;
DROP INDEX rm_findings_by_status;
DROP INDEX rm_findings_by_severity;
DROP INDEX rm_findings_by_template;
CREATE INDEX rm_findings_shown ON rm_findings (org_id, visible, last_detected, finding_id);
CREATE INDEX rm_findings_by_status
    ON rm_findings (org_id, visible, status, last_detected, finding_id);
CREATE INDEX rm_findings_by_severity
    ON rm_findings (org_id, visible, severity, last_detected, finding_id);
CREATE INDEX rm_findings_by_rank
    ON rm_findings (org_id, visible, severity_rank, last_detected, finding_id);
CREATE INDEX rm_findings_by_first ON rm_findings (org_id, visible, first_detected, finding_id);
CREATE INDEX rm_findings_by_template
    ON rm_findings (org_id, visible, template_id, last_detected, finding_id);
