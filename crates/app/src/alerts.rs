//! Alerts: raised in the append that completes a scan of a monitored asset when it sees the
//! asset differ from the previous scan, so no change seen is lost between the two; then
//! acknowledged and resolved.

use crate::streams::{alert_stream, scan_stream};
use crate::{new_id, App, CommandError};
use easm_domain::{changes, Alert, DetectedBy, JobStatus, ScanJob};
use easm_events::{
    AlertId, AssetId, EventMeta, GroupId, MonitorId, Observed, OrgId, ScanCompleted, ScanJobId,
};
use easm_store::StreamAppend;

/// What a person does with an alert; each answers 409 when the alert is there already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertAction {
    Acknowledge,
    Resolve,
}

impl App {
    pub async fn act_on_alert(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &AlertId,
        action: AlertAction,
        notes: Option<&str>,
    ) -> Result<(), CommandError> {
        self.on_stream(org_id, meta, alert_stream(id), |a: &Alert| match action {
            AlertAction::Acknowledge => a.acknowledge(notes),
            AlertAction::Resolve => a.resolve(notes),
        })
        .await?;
        Ok(())
    }

    /// What a completed scan job recorded of its asset, if it completed.
    pub async fn observation(
        &self,
        org_id: &OrgId,
        scan_job_id: &ScanJobId,
    ) -> Result<Option<ScanCompleted>, CommandError> {
        let (_, events) = self.log.load(org_id, &scan_stream(scan_job_id)).await?;
        Ok(events.into_iter().rev().find_map(|e| match e {
            easm_events::Event::ScanCompleted(c) => Some(c),
            _ => None,
        }))
    }

    /// The alerts `job` raises by observing `observed`, compared with the previous completed
    /// scan of the same asset, profile and ports; attributed to the asset's own monitor before
    /// its group's. None without an enabled monitor or an earlier observation.
    pub(crate) async fn alerts_for(
        &self,
        org_id: &OrgId,
        job: &ScanJob,
        observed: &Observed,
    ) -> Result<Vec<StreamAppend>, CommandError> {
        let Some(asset) = self.read.asset(org_id, &job.asset_id).await? else {
            return Ok(vec![]);
        };
        let asset_id = AssetId::new(&asset.id);
        let watching = self
            .read
            .monitors_watching(org_id, &asset_id, &GroupId::new(&asset.group_id))
            .await?;
        let Some(monitor) = watching.first() else {
            return Ok(vec![]);
        };
        let previous = self
            .read
            .asset_scan_jobs(org_id, &asset_id)
            .await?
            .into_iter()
            .filter(|j| {
                j.status == JobStatus::Completed.as_str()
                    && job.id != j.id.as_str()
                    && j.profile == job.profile
                    && j.ports == job.ports
            })
            .max_by(|a, b| a.finished_at.cmp(&b.finished_at));
        let Some(previous) = previous else {
            return Ok(vec![]);
        };
        let Some(before) = self
            .observation(org_id, &ScanJobId::new(previous.id))
            .await?
        else {
            return Ok(vec![]);
        };
        // Both must come from the built-in scanner (it always counts the ports it tried).
        if before.observed.ports_scanned.is_none() || observed.ports_scanned.is_none() {
            return Ok(vec![]);
        }
        let monitor_id = MonitorId::new(&monitor.id);
        Ok(changes(&asset.value, &before.observed, observed)
            .into_iter()
            .map(|change| {
                let alert_id: AlertId = new_id();
                StreamAppend {
                    stream_id: alert_stream(&alert_id),
                    expected_version: 0,
                    events: vec![change.into_alert(
                        &alert_id,
                        &monitor_id,
                        &asset_id,
                        &DetectedBy::Scan(job.id.clone()),
                    )],
                }
            })
            .collect())
    }
}
