//! Findings: recorded from a scanner's detections (one per deduplication key: new, detected
//! again, or reopened) and triaged one by one or in bulk.

use crate::execute::Decision;
use crate::streams::{finding_stream, scan_stream};
use crate::{App, CommandError};
use easm_domain::{finding_id, DetectedBy, DomainError, Finding, ItemError, ScanJob};
use easm_events::{AssetId, Detection, Event, EventMeta, FindingId, OrgId, ScanJobId};
use std::collections::HashSet;
use std::sync::Mutex;

/// Findings decided (their streams read together) and appended together when results are
/// imported.
const IMPORT_CHUNK: usize = 2000;

/// What an import of results did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub new: usize,
    pub redetected: usize,
    pub reopened: usize,
    /// Already recorded for this scan job (a repeated import).
    pub unchanged: usize,
}

impl Imported {
    fn add(&mut self, other: Imported) {
        self.new += other.new;
        self.redetected += other.redetected;
        self.reopened += other.reopened;
        self.unchanged += other.unchanged;
    }

    fn count(&mut self, events: &[Event]) {
        match events.first() {
            Some(Event::FindingNew(_)) => self.new += 1,
            Some(Event::FindingReopened(_)) => self.reopened += 1,
            Some(_) => self.redetected += 1,
            None => self.unchanged += 1,
        }
    }
}

impl App {
    /// Record results (of any scanner) under a scan job of the organization.
    pub async fn import_results(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        scan_job_id: &ScanJobId,
        detections: &[Detection],
    ) -> Result<Imported, CommandError> {
        let (_, job) = self
            .load::<ScanJob>(org_id, &scan_stream(scan_job_id))
            .await?;
        job.require()?;
        let imported = self
            .record_detections(
                meta,
                org_id,
                &DetectedBy::Scan(scan_job_id.clone()),
                &job.asset_id,
                None,
                detections,
            )
            .await?;
        self.refresh_risk(meta, org_id, [job.asset_id]).await;
        Ok(imported)
    }

    /// Detections on `asset_id` by a job (`profile` for the built-in scanner and discovery,
    /// None for imports), appended [`IMPORT_CHUNK`] findings at a time.
    pub(crate) async fn record_detections(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        by: &DetectedBy,
        asset_id: &AssetId,
        profile: Option<&str>,
        detections: &[Detection],
    ) -> Result<Imported, CommandError> {
        let mut seen = HashSet::new();
        let unique: Vec<(FindingId, &Detection)> = detections
            .iter()
            .map(|d| {
                let id = finding_id(
                    org_id,
                    asset_id,
                    d.template_id.trim(),
                    d.matched_at.trim(),
                    d.matcher_name.trim(),
                );
                (id, d)
            })
            .filter(|(id, _)| seen.insert(id.clone()))
            .collect();
        let mut outcome = Imported::default();
        for chunk in unique.chunks(IMPORT_CHUNK) {
            // The decision of the attempt that commits is the one that counts.
            let last = Mutex::new(Imported::default());
            self.execute(org_id, meta, || async {
                let mut counted = Imported::default();
                let mut d = Decision::none();
                let streams: Vec<String> = chunk.iter().map(|(id, _)| finding_stream(id)).collect();
                let names: Vec<&str> = streams.iter().map(String::as_str).collect();
                let found = self.load_many::<Finding>(org_id, &names).await?;
                for (((id, detection), stream), (v, f)) in chunk.iter().zip(streams).zip(found) {
                    let events = f.detect(id, asset_id, by, profile, detection)?;
                    counted.count(&events);
                    d.push(stream, v, events);
                }
                *last.lock().expect("counts") = counted;
                Ok(d)
            })
            .await?;
            outcome.add(last.into_inner().expect("counts"));
        }
        Ok(outcome)
    }

    /// One status for many findings, all or nothing: one event per finding that changes, in one
    /// append. Ids outside the organization are not found.
    pub async fn bulk_finding_status(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        ids: &[FindingId],
        status: &str,
        notes: Option<&str>,
    ) -> Result<usize, CommandError> {
        let changed = Mutex::new(0);
        let assets = Mutex::new(vec![]);
        self.execute(org_id, meta, || async {
            let mut d = Decision::none();
            let mut errors = vec![];
            let mut touched = vec![];
            for (index, id) in ids.iter().enumerate() {
                let stream = finding_stream(id);
                let (v, f) = self.load::<Finding>(org_id, &stream).await?;
                let fail = |code: &'static str, error: String| ItemError {
                    index,
                    value: Some(id.to_string()),
                    code,
                    error,
                    existing_id: None,
                };
                match f.change_status(status, notes) {
                    Ok(events) if !events.is_empty() => {
                        touched.push(f.asset_id.clone());
                        d.push(stream, v, events);
                    }
                    Ok(_) => {}
                    Err(DomainError::NotFound { .. }) => {
                        errors.push(fail("NOT_FOUND", format!("id: finding {id} not found")))
                    }
                    Err(e) => errors.push(fail("VALIDATION_ERROR", e.to_string())),
                }
            }
            if !errors.is_empty() {
                return Err(DomainError::Items(errors).into());
            }
            *changed.lock().expect("count") = d.streams.len();
            *assets.lock().expect("assets") = touched;
            Ok(d)
        })
        .await?;
        let assets = assets.into_inner().expect("assets");
        self.refresh_risk(meta, org_id, assets).await;
        Ok(changed.into_inner().expect("count"))
    }

    /// Triage a finding: status (with notes), assignee, notes.
    pub async fn triage_finding(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &FindingId,
        status: Option<&str>,
        assignee: Option<&str>,
        notes: Option<&str>,
    ) -> Result<(), CommandError> {
        let stream = finding_stream(id);
        self.on_stream(org_id, meta, stream.clone(), |f: &Finding| {
            let mut events = match status {
                Some(s) => f.change_status(s, notes)?,
                None => vec![],
            };
            // Notes travel with a status change; otherwise they are an update of their own.
            let notes = if events.is_empty() { notes } else { None };
            events.extend(f.update(assignee, notes)?);
            Ok(events)
        })
        .await?;
        if status.is_some() {
            let (_, f) = self.load::<Finding>(org_id, &stream).await?;
            self.refresh_risk(meta, org_id, [f.asset_id]).await;
        }
        Ok(())
    }
}
