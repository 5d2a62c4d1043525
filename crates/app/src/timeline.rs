//! An asset's timeline: what happened to it, whichever stream recorded it.

use crate::streams::{alert_stream, asset_stream, finding_stream, risk_stream, scan_stream};
use crate::{App, CommandError};
use easm_events::{AssetId, OrgId, RecordedEvent};

/// Event types a timeline leaves out: a scan's progress ticks say nothing a reader of the
/// asset's history needs beside the scan's start and end.
const NOT_IN_TIMELINES: &[&str] = &["scan.progressed"];

impl App {
    /// One page of an asset's history, newest first, and the total: its own events and risk,
    /// the scans of it, its findings (new, detected again, triaged, resolved) and the alerts
    /// raised on it. None when the asset never existed in the organization.
    pub async fn asset_timeline(
        &self,
        org_id: &OrgId,
        asset_id: &AssetId,
        offset: i64,
        limit: i64,
    ) -> Result<Option<(Vec<RecordedEvent>, i64)>, CommandError> {
        let related = self.read.asset_related(org_id, asset_id).await?;
        let mut streams = vec![asset_stream(asset_id), risk_stream(asset_id)];
        streams.extend(related.scan_jobs.iter().map(scan_stream));
        streams.extend(related.findings.iter().map(finding_stream));
        streams.extend(related.alerts.iter().map(alert_stream));
        let (events, total) = self
            .log
            .streams_page(org_id, &streams, NOT_IN_TIMELINES, offset, limit)
            .await?;
        // An asset that existed has at least its `asset.added`, which no timeline leaves out.
        Ok((total > 0).then_some((events, total)))
    }
}
