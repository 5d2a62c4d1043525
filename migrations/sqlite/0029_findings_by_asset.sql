-- An asset's findings of a severity, newest first, from one index: led by the asset and the
-- organization, so that with as many equalities as the severity index (and more) a planner
-- without statistics (SQLite's, until they are gathered) still picks the asset's.
DROP INDEX rm_findings_by_asset;
CREATE INDEX rm_findings_by_asset
    ON rm_findings (asset_id, org_id, visible, severity, last_detected, finding_id);
