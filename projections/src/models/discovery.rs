//! Discovery jobs and the names they found: a job's row (status, progress, the modules that ran,
//! addresses, services, wildcards) and a row per (job, name), so that a job's names are listed
//! and the organization's first sighting of a name is found through an index.

use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, opt_id, to_json, ReadModel, Table};
use easm_domain::JobStatus;
use easm_events::{
    DiscoveryJobId, Event, FoundAddress, FoundName, FoundService, ModuleRun, MonitorId, OrgId,
    Wildcard,
};
use easm_store::{AnyConnection, AnyRow, Filter, Row, StoreError, Val};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveryJobRow {
    pub org_id: OrgId,
    pub domains: Vec<String>,
    pub deep: bool,
    pub monitor_id: Option<MonitorId>,
    pub status: JobStatus,
    pub progress: i64,
    pub stage: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    pub modules: Option<Vec<ModuleRun>>,
    pub ips: Option<Vec<FoundAddress>>,
    pub services: Option<Vec<FoundService>>,
    pub wildcard: Option<Vec<Wildcard>>,
    pub new_names: Option<Vec<String>>,
    pub subdomain_count: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

pub(crate) struct DiscoveryJobs;

fn job_key(event: &Event) -> Option<&DiscoveryJobId> {
    match event {
        Event::DiscoveryRequested(e) => Some(&e.discovery_job_id),
        Event::DiscoveryStarted(e) => Some(&e.discovery_job_id),
        Event::DiscoveryProgressed(e) => Some(&e.discovery_job_id),
        Event::DiscoveryNamesFound(e) => Some(&e.discovery_job_id),
        Event::DiscoveryCompleted(e) => Some(&e.discovery_job_id),
        Event::DiscoveryFailed(e) => Some(&e.discovery_job_id),
        Event::DiscoveryCancelled(e) => Some(&e.discovery_job_id),
        _ => None,
    }
}

impl ReadModel for DiscoveryJobs {
    type Row = DiscoveryJobRow;
    const TABLE: Table = Table {
        name: "rm_discovery_jobs",
        pk: "discovery_job_id",
        columns: &[
            "org_id",
            "domains",
            "deep",
            "monitor_id",
            "status",
            "progress",
            "stage",
            "attempts",
            "error",
            "modules",
            "ips",
            "services",
            "wildcard",
            "new_names",
            "subdomain_count",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
        ],
    };

    fn key(event: &Event) -> Option<&str> {
        job_key(event).map(DiscoveryJobId::as_str)
    }

    fn fold(rows: &mut RowMap<DiscoveryJobRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        if let Event::DiscoveryRequested(e) = event {
            return create(rows, &e.discovery_job_id, || DiscoveryJobRow {
                org_id: origin.org_id.clone(),
                domains: e.domains.clone(),
                deep: e.deep,
                monitor_id: e.monitor_id.clone(),
                status: JobStatus::Queued,
                progress: 0,
                stage: None,
                attempts: 0,
                error: None,
                modules: None,
                ips: None,
                services: None,
                wildcard: None,
                new_names: None,
                subdomain_count: 0,
                created_at: at,
                started_at: None,
                finished_at: None,
                updated_at: at,
            });
        }
        let Some(row) = Self::key(event).and_then(|id| live(rows, id)) else {
            return;
        };
        match event {
            Event::DiscoveryStarted(e) => {
                row.status = JobStatus::Running;
                row.attempts = i64::from(e.attempt);
                row.started_at.get_or_insert(at);
            }
            Event::DiscoveryProgressed(e) => {
                row.progress = i64::from(e.progress);
                row.stage = Some(e.stage.clone());
            }
            Event::DiscoveryNamesFound(_) => {}
            Event::DiscoveryCompleted(e) => {
                row.status = JobStatus::Completed;
                row.progress = 100;
                row.stage = None;
                row.modules = Some(e.modules.clone());
                row.ips = Some(e.ips.clone());
                row.services = Some(e.services.clone());
                row.wildcard = Some(e.wildcard.clone());
                row.new_names = Some(e.new_names.clone());
                row.subdomain_count = i64::from(e.subdomains);
                row.finished_at = Some(at);
            }
            Event::DiscoveryFailed(e) => {
                row.status = JobStatus::Failed;
                row.error = Some(e.reason.clone());
                row.finished_at = Some(at);
            }
            Event::DiscoveryCancelled(_) => {
                row.status = JobStatus::Cancelled;
                row.finished_at = Some(at);
            }
            _ => return,
        }
        row.updated_at = at;
    }

    fn vals(row: &DiscoveryJobRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(to_json(&row.domains)),
            Val::Int(i64::from(row.deep)),
            Val::OptText(row.monitor_id.as_ref().map(ToString::to_string)),
            Val::Text(row.status.as_str().into()),
            Val::Int(row.progress),
            Val::OptText(row.stage.clone()),
            Val::Int(row.attempts),
            Val::OptText(row.error.clone()),
            Val::OptText(row.modules.as_ref().map(to_json)),
            Val::OptText(row.ips.as_ref().map(to_json)),
            Val::OptText(row.services.as_ref().map(to_json)),
            Val::OptText(row.wildcard.as_ref().map(to_json)),
            Val::OptText(row.new_names.as_ref().map(to_json)),
            Val::Int(row.subdomain_count),
            Val::Int(row.created_at),
            Val::OptInt(row.started_at),
            Val::OptInt(row.finished_at),
            Val::Int(row.updated_at),
        ]
    }

    fn parse(r: &AnyRow) -> Result<DiscoveryJobRow, StoreError> {
        let t = &Self::TABLE;
        Ok(DiscoveryJobRow {
            org_id: id(r, "org_id")?,
            domains: t.json(r, "domains")?,
            deep: r.try_get::<i64, _>("deep")? != 0,
            monitor_id: opt_id(r, "monitor_id")?,
            status: t.named(r, "status", JobStatus::parse)?,
            progress: r.try_get("progress")?,
            stage: r.try_get("stage")?,
            attempts: r.try_get("attempts")?,
            error: r.try_get("error")?,
            modules: t.opt_json(r, "modules")?,
            ips: t.opt_json(r, "ips")?,
            services: t.opt_json(r, "services")?,
            wildcard: t.opt_json(r, "wildcard")?,
            new_names: t.opt_json(r, "new_names")?,
            subdomain_count: r.try_get("subdomain_count")?,
            created_at: r.try_get("created_at")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

/// A name a job found. Keyed `<job>/<name>`.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscoveredNameRow {
    pub discovery_job_id: DiscoveryJobId,
    pub org_id: OrgId,
    pub found: FoundName,
    pub found_at: i64,
}

pub(crate) struct DiscoveredNames;

fn name_key(job: &DiscoveryJobId, name: &str) -> String {
    format!("{job}/{name}")
}

impl ReadModel for DiscoveredNames {
    type Row = DiscoveredNameRow;
    const TABLE: Table = Table {
        name: "rm_discovery_names",
        pk: "name_key",
        columns: &[
            "discovery_job_id",
            "org_id",
            "name",
            "addresses",
            "cname",
            "sources",
            "expired",
            "found_at",
        ],
    };

    /// A batch names many rows: [`ReadModel::related`] lists them.
    fn key(_event: &Event) -> Option<&str> {
        None
    }

    async fn related(
        _conn: &mut AnyConnection,
        events: &[Event],
    ) -> Result<Vec<String>, StoreError> {
        Ok(events
            .iter()
            .filter_map(|e| match e {
                Event::DiscoveryNamesFound(f) => Some(f),
                _ => None,
            })
            .flat_map(|f| {
                f.names
                    .iter()
                    .map(|n| name_key(&f.discovery_job_id, &n.name))
            })
            .collect())
    }

    fn fold(rows: &mut RowMap<DiscoveredNameRow>, origin: Origin<'_>, event: &Event) {
        let Event::DiscoveryNamesFound(f) = event else {
            return;
        };
        for n in &f.names {
            let key = name_key(&f.discovery_job_id, &n.name);
            if let Some(row) = live(rows, &key) {
                let known = &mut row.found;
                for s in &n.sources {
                    if !known.sources.contains(s) {
                        known.sources.push(s.clone());
                    }
                }
                for a in &n.addresses {
                    if !known.addresses.contains(a) {
                        known.addresses.push(a.clone());
                    }
                }
                if known.cname.is_none() {
                    known.cname.clone_from(&n.cname);
                }
                known.expired &= n.expired;
                continue;
            }
            rows.insert(
                key,
                Some(DiscoveredNameRow {
                    discovery_job_id: f.discovery_job_id.clone(),
                    org_id: origin.org_id.clone(),
                    found: n.clone(),
                    found_at: origin.at,
                }),
            );
        }
    }

    fn vals(row: &DiscoveredNameRow) -> Vec<Val> {
        vec![
            Val::Text(row.discovery_job_id.to_string()),
            Val::Text(row.org_id.to_string()),
            Val::Text(row.found.name.clone()),
            Val::Text(to_json(&row.found.addresses)),
            Val::OptText(row.found.cname.clone()),
            Val::Text(to_json(&row.found.sources)),
            Val::Int(i64::from(row.found.expired)),
            Val::Int(row.found_at),
        ]
    }

    fn parse(r: &AnyRow) -> Result<DiscoveredNameRow, StoreError> {
        let t = &Self::TABLE;
        Ok(DiscoveredNameRow {
            discovery_job_id: id(r, "discovery_job_id")?,
            org_id: id(r, "org_id")?,
            found: FoundName {
                name: r.try_get("name")?,
                addresses: t.json(r, "addresses")?,
                cname: r.try_get("cname")?,
                sources: t.json(r, "sources")?,
                expired: r.try_get::<i64, _>("expired")? != 0,
            },
            found_at: r.try_get("found_at")?,
        })
    }
}

#[derive(Debug, Default)]
pub struct DiscoveryJobFilter {
    pub status: Option<String>,
}

/// A name as a job's detail shows it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SubdomainView {
    pub name: String,
    pub addresses: Vec<String>,
    pub cname: Option<String>,
    /// The modules that found it: `ct`, `bruteforce`, `permutations`, `axfr`, `tls`, `reverse`.
    pub sources: Vec<String>,
    /// Seen only in expired certificates.
    pub expired: bool,
    /// When the organization's discovery first found it (this job or an earlier one).
    pub first_seen: String,
}

/// A discovery job as the API shows it; the list leaves `subdomains` out.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryJobView {
    pub id: String,
    /// queued, running, completed, failed or cancelled.
    pub status: String,
    pub domains: Vec<String>,
    pub deep: bool,
    /// The monitor whose schedule started it.
    pub monitor_id: Option<String>,
    /// 0 to 100.
    pub progress: i64,
    /// The module running.
    pub stage: Option<String>,
    pub attempts: i64,
    pub error: Option<String>,
    /// The modules that ran, each with what it found and how long it took.
    #[schema(value_type = Vec<Object>)]
    pub modules: Vec<ModuleRun>,
    pub subdomain_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdomains: Option<Vec<SubdomainView>>,
    /// Addresses of the found names, with their reverse names once completed.
    #[schema(value_type = Vec<Object>)]
    pub ips: Vec<FoundAddress>,
    /// TLS services on found hosts and the names their certificates cover.
    #[schema(value_type = Vec<Object>)]
    pub services: Vec<FoundService>,
    /// Wildcard zones seen, their answers and how many names they hid.
    #[schema(value_type = Vec<Object>)]
    pub wildcard: Vec<Wildcard>,
    /// Names no earlier job of the organization found (once completed).
    pub new_names: Vec<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: String,
}

const JOB_COLUMNS: &str = "j.discovery_job_id, j.org_id, j.domains, j.deep, j.monitor_id, \
     j.status, j.progress, j.stage, j.attempts, j.error, j.modules, j.ips, j.services, \
     j.wildcard, j.new_names, j.subdomain_count, j.created_at, j.started_at, j.finished_at, \
     j.updated_at";

fn job_view(r: &AnyRow) -> Result<DiscoveryJobView, StoreError> {
    let row = DiscoveryJobs::parse(r)?;
    Ok(DiscoveryJobView {
        id: r.try_get("discovery_job_id")?,
        status: row.status.as_str().into(),
        domains: row.domains,
        deep: row.deep,
        monitor_id: row.monitor_id.map(String::from),
        progress: row.progress,
        stage: row.stage,
        attempts: row.attempts,
        error: row.error,
        modules: row.modules.unwrap_or_default(),
        subdomain_count: row.subdomain_count,
        subdomains: None,
        ips: row.ips.unwrap_or_default(),
        services: row.services.unwrap_or_default(),
        wildcard: row.wildcard.unwrap_or_default(),
        new_names: row.new_names.unwrap_or_default(),
        created_at: iso(row.created_at),
        started_at: row.started_at.map(iso),
        finished_at: row.finished_at.map(iso),
        updated_at: iso(row.updated_at),
    })
}

impl ReadModels {
    pub async fn discovery_jobs(
        &self,
        org_id: &OrgId,
        f: &DiscoveryJobFilter,
        p: PageRequest,
    ) -> Result<Page<DiscoveryJobView>, StoreError> {
        let mut w = Filter::by("j.org_id", org_id.as_str());
        w.eq("j.status", f.status.as_deref());
        self.filtered_page(
            JOB_COLUMNS,
            "rm_discovery_jobs j",
            "j.created_at DESC, j.discovery_job_id DESC",
            &w,
            p,
            job_view,
        )
        .await
    }

    /// A job with every name it found (and, while it runs, the addresses they resolve to).
    pub async fn discovery_job(
        &self,
        org_id: &OrgId,
        id: &DiscoveryJobId,
    ) -> Result<Option<DiscoveryJobView>, StoreError> {
        let Some(mut job) = self
            .org_row(
                JOB_COLUMNS,
                "rm_discovery_jobs j",
                "j",
                "discovery_job_id",
                org_id,
                id,
                job_view,
            )
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT n.name_key, n.discovery_job_id, n.org_id, n.name, n.addresses, n.cname, \
             n.sources, n.expired, n.found_at, \
             (SELECT MIN(o.found_at) FROM rm_discovery_names o \
              WHERE o.org_id = n.org_id AND o.name = n.name) AS first_seen \
             FROM rm_discovery_names n WHERE n.discovery_job_id = $1 ORDER BY n.name",
        )
        .bind(id.as_str())
        .fetch_all(self.db.reader())
        .await?;
        let mut subdomains = Vec::with_capacity(rows.len());
        for r in &rows {
            let row = DiscoveredNames::parse(r)?;
            let first: i64 = r.try_get("first_seen")?;
            subdomains.push(SubdomainView {
                name: row.found.name,
                addresses: row.found.addresses,
                cname: row.found.cname,
                sources: row.found.sources,
                expired: row.found.expired,
                first_seen: iso(first),
            });
        }
        if job.ips.is_empty() {
            job.ips = addresses_of(&subdomains);
        }
        job.subdomain_count = subdomains.len() as i64;
        job.subdomains = Some(subdomains);
        Ok(Some(job))
    }

    /// Jobs for the workers: queued or running, requested at or before `before` (micros),
    /// oldest first.
    pub async fn active_discovery_jobs(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(OrgId, DiscoveryJobId)>, StoreError> {
        let rows = sqlx::query(
            "SELECT org_id, discovery_job_id FROM rm_discovery_jobs \
             WHERE status IN ('queued', 'running') AND created_at <= $1 \
             ORDER BY created_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(self.db.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((id(r, "org_id")?, id(r, "discovery_job_id")?)))
            .collect()
    }

    /// Whether a job of the organization over `domain` completed before `job` was requested: a
    /// baseline, without which every name would look new.
    pub async fn discovered_before(
        &self,
        org_id: &OrgId,
        domain: &str,
        job: &DiscoveryJobId,
    ) -> Result<bool, StoreError> {
        // Domains are normalised hostnames: no quote can break out of the JSON string matched.
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM rm_discovery_jobs o JOIN rm_discovery_jobs j \
             ON j.discovery_job_id = $1 AND o.org_id = j.org_id \
             WHERE o.org_id = $2 AND o.status = 'completed' \
             AND o.discovery_job_id <> j.discovery_job_id AND o.created_at <= j.created_at \
             AND o.domains LIKE $3",
        )
        .bind(job.as_str())
        .bind(org_id.as_str())
        .bind(format!("%\"{domain}\"%"))
        .fetch_one(self.db.reader())
        .await?;
        Ok(n > 0)
    }

    /// The names of a job that no other job of the organization found before it, sorted.
    pub async fn first_found_names(
        &self,
        org_id: &OrgId,
        job: &DiscoveryJobId,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT n.name FROM rm_discovery_names n WHERE n.discovery_job_id = $1 \
             AND n.org_id = $2 AND NOT EXISTS (SELECT 1 FROM rm_discovery_names o \
             WHERE o.org_id = n.org_id AND o.name = n.name \
             AND o.discovery_job_id <> n.discovery_job_id AND o.found_at <= n.found_at) \
             ORDER BY n.name",
        )
        .bind(job.as_str())
        .bind(org_id.as_str())
        .fetch_all(self.db.reader())
        .await?)
    }
}

/// Addresses with the names resolving to them, by address.
fn addresses_of(names: &[SubdomainView]) -> Vec<FoundAddress> {
    let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for n in names {
        for a in &n.addresses {
            by.entry(a).or_default().push(n.name.clone());
        }
    }
    by.into_iter()
        .map(|(address, names)| FoundAddress {
            address: address.into(),
            names,
            ptr: vec![],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::given;
    use easm_events::{DiscoveryNamesFound, DiscoveryRequested, DiscoveryStarted};

    fn found(names: &[(&str, &str)]) -> Event {
        Event::DiscoveryNamesFound(DiscoveryNamesFound {
            discovery_job_id: "d1".into(),
            names: names
                .iter()
                .map(|(n, s)| FoundName {
                    name: n.to_string(),
                    addresses: vec!["192.0.2.1".into()],
                    sources: vec![s.to_string()],
                    ..Default::default()
                })
                .collect(),
        })
    }

    #[test]
    fn names_found_in_batches_keep_their_first_time_and_gather_sources() {
        let state = given::events([
            Event::DiscoveryRequested(DiscoveryRequested {
                discovery_job_id: "d1".into(),
                domains: vec!["example.com".into()],
                deep: false,
                monitor_id: None,
            }),
            Event::DiscoveryStarted(DiscoveryStarted {
                discovery_job_id: "d1".into(),
                worker_id: "w".into(),
                attempt: 1,
            }),
            found(&[("api.example.com", "ct"), ("www.example.com", "ct")]),
            found(&[("api.example.com", "bruteforce")]),
        ]);
        let job = state.discovery_jobs["d1"].clone().unwrap();
        assert_eq!(job.status, JobStatus::Running);
        assert_eq!(job.started_at, Some(1));
        let api = state.discovered_names["d1/api.example.com"]
            .clone()
            .unwrap();
        assert_eq!(api.found.sources, vec!["ct", "bruteforce"]);
        assert_eq!(api.found.addresses, vec!["192.0.2.1"]);
        assert_eq!(api.found_at, 2);
        assert!(state.discovered_names.contains_key("d1/www.example.com"));
    }
}
