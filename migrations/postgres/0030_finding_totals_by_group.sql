-- Findings counted per group too: the sum of its live assets' totals, moved by the projection
-- when an asset changes group or is removed (projections/src/models/finding_totals.rs), so that
-- a group's summary reads its own totals instead of summing every asset's.
INSERT INTO rm_finding_totals (org_id, scope, scope_id, severity, status, n)
    SELECT t.org_id, 'group', a.group_id, t.severity, t.status, CAST(SUM(t.n) AS BIGINT)
    FROM rm_finding_totals t JOIN rm_assets a ON a.asset_id = t.scope_id AND a.org_id = t.org_id
    WHERE t.scope = 'asset'
    GROUP BY t.org_id, a.group_id, t.severity, t.status;
