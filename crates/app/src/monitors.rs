//! Monitors: recurring scans of an asset or a group (the plan's scheduled scans), run by the
//! scheduler when due or by hand; each run is recorded with the jobs it requested and the assets
//! it skipped.

use crate::execute::{Decision, Quota};
use crate::streams::{asset_stream, group_stream, monitor_stream, MONITORS};
use crate::{new_id, App, CommandError, ScanRequest};
use easm_domain::{
    Asset, DomainError, Group, Limits, Monitor, MonitorScope, MonitorSpec, Plan, MAX_DOMAINS,
};
use easm_events::{
    AssetId, DiscoveryJobId, EventMeta, MonitorId, MonitorKind, OrgId, ScanJobId, SkippedAsset,
};
use easm_projections::read::{AssetFilter, AssetView, PageRequest};
use easm_store::Constraint;

/// What one run of a monitor did.
#[derive(Debug, Default)]
pub struct MonitorRun {
    pub scan_job_ids: Vec<ScanJobId>,
    /// A monitor's discovery over its domain assets.
    pub discovery_job_ids: Vec<DiscoveryJobId>,
    pub skipped: Vec<SkippedAsset>,
}

impl App {
    /// A monitor of a live asset or an existing group; each one counts against the plan's
    /// scheduled scans (402).
    pub async fn create_monitor(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        scope: MonitorScope,
        kind: MonitorKind,
        spec: &MonitorSpec<'_>,
    ) -> Result<MonitorId, CommandError> {
        let id = new_id();
        let events = Monitor::create(&id, scope.clone(), kind, spec)?;
        let limit = Limits::of(plan).scheduled_scans;
        self.execute(org_id, meta, || async {
            let (target, version) = match &scope {
                MonitorScope::Asset(a) => {
                    let stream = asset_stream(a);
                    let (v, asset) = self.load::<Asset>(org_id, &stream).await?;
                    if !asset.live() {
                        return Err(DomainError::NotFound { resource: "asset" }.into());
                    }
                    (stream, v)
                }
                MonitorScope::Group(g) => {
                    let stream = group_stream(g);
                    let (v, group) = self.load::<Group>(org_id, &stream).await?;
                    if !group.live() {
                        return Err(DomainError::NotFound {
                            resource: "asset group",
                        }
                        .into());
                    }
                    (stream, v)
                }
            };
            let mut d = Decision::one(monitor_stream(&id), 0, events.clone());
            let quota = Quota {
                scope: MONITORS,
                name: "scheduled scans",
                max: limit,
                plan,
            };
            self.within(org_id, &quota, id.as_str(), &mut d).await?;
            d.constraints.push(Constraint::StreamAt {
                stream_id: target,
                version,
            });
            Ok(d)
        })
        .await?;
        Ok(id)
    }

    pub async fn update_monitor(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &MonitorId,
        kind: MonitorKind,
        spec: &MonitorSpec<'_>,
    ) -> Result<(), CommandError> {
        self.on_stream(org_id, meta, monitor_stream(id), |m: &Monitor| {
            m.require_kind(kind)?;
            m.update(spec)
        })
        .await?;
        Ok(())
    }

    /// Its alerts and scan jobs stay; its slot of the plan is freed.
    pub async fn delete_monitor(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &MonitorId,
        kind: MonitorKind,
    ) -> Result<(), CommandError> {
        let stream = monitor_stream(id);
        self.execute(org_id, meta, || async {
            let (v, m) = self.load::<Monitor>(org_id, &stream).await?;
            m.require_kind(kind)?;
            let mut d = Decision::one(stream.clone(), v, m.delete()?);
            d.constraints.push(Constraint::Release {
                scope: MONITORS.into(),
                key: id.to_string(),
            });
            Ok(d)
        })
        .await?;
        Ok(())
    }

    /// Request the monitor's scans and record the run. A scheduled run of a monitor that is not
    /// due does nothing (None): another process ran it first. A run by hand names the kind the
    /// caller asked for (`manual`); the scheduler runs both kinds. An asset that cannot be scanned
    /// now (a scan of it is already active, the month's quota is spent, a CIDR range) is
    /// skipped with the reason.
    pub async fn run_monitor(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        id: &MonitorId,
        manual: Option<MonitorKind>,
    ) -> Result<Option<MonitorRun>, CommandError> {
        let stream = monitor_stream(id);
        let (_, monitor) = self.load::<Monitor>(org_id, &stream).await?;
        match manual {
            Some(kind) => monitor.require_kind(kind)?,
            None => monitor.require()?,
        }
        let manual = manual.is_some();
        let now = chrono::Utc::now();
        if !manual && !monitor.due(now) {
            return Ok(None);
        }
        let mut run = MonitorRun::default();
        let ports: Option<Vec<i64>> = monitor
            .ports
            .as_ref()
            .map(|p| p.iter().map(|&p| i64::from(p)).collect());
        let assets = self.monitored_assets(org_id, &monitor).await?;
        // Its scans are requested like a user's, caused by the monitor or schedule.
        let caused = EventMeta {
            causation_id: Some(id.to_string()),
            ..meta.clone()
        };
        if let (Some(MonitorScope::Asset(gone)), true) = (&monitor.scope, assets.is_empty()) {
            run.skipped.push(SkippedAsset {
                asset_id: gone.clone(),
                reason: "the asset was removed".into(),
            });
        }
        for asset in &assets {
            let skip = |reason: String| SkippedAsset {
                asset_id: AssetId::new(&asset.id),
                reason,
            };
            if let Err(reason) = easm_domain::scan_host(&asset.asset_type, &asset.value) {
                run.skipped.push(skip(reason));
                continue;
            }
            let asset_id = AssetId::new(&asset.id);
            let req = ScanRequest {
                asset_id: &asset_id,
                profile: &monitor.profile,
                ports: ports.as_deref(),
                rerun_of: None,
            };
            match self.request_scan(&caused, org_id, plan, &req).await {
                Ok(job) => run.scan_job_ids.push(job),
                Err(CommandError::Domain(e)) => run.skipped.push(skip(e.to_string())),
                Err(e) => return Err(e),
            }
        }
        if monitor.kind == MonitorKind::Monitor {
            self.discover_domains(&caused, org_id, plan, id, &assets, &mut run)
                .await?;
        }
        let recorded = self
            .on_stream(org_id, meta, stream, |m: &Monitor| {
                m.trigger(
                    now,
                    manual,
                    run.scan_job_ids.clone(),
                    run.discovery_job_ids.clone(),
                    run.skipped.clone(),
                )
            })
            .await?;
        Ok((!recorded.is_empty()).then_some(run))
    }

    /// A monitor also runs discovery over its domain assets, [`MAX_DOMAINS`] per job, so that
    /// its next runs raise `new_subdomain` alerts. A job that cannot start (the month's
    /// discovery jobs spent) skips its domains with the reason.
    async fn discover_domains(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        plan: Plan,
        id: &MonitorId,
        assets: &[AssetView],
        run: &mut MonitorRun,
    ) -> Result<(), CommandError> {
        let domains: Vec<&AssetView> = assets.iter().filter(|a| a.asset_type == "domain").collect();
        for chunk in domains.chunks(MAX_DOMAINS) {
            let values: Vec<String> = chunk.iter().map(|a| a.value.clone()).collect();
            match self
                .request_discovery(meta, org_id, plan, &values, false, Some(id))
                .await
            {
                Ok(job) => run.discovery_job_ids.push(job),
                Err(CommandError::Domain(e)) => {
                    run.skipped.extend(chunk.iter().map(|a| SkippedAsset {
                        asset_id: AssetId::new(&a.id),
                        reason: format!("discovery: {e}"),
                    }))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The live assets a run scans: the monitor's asset, or every asset of its group now.
    async fn monitored_assets(
        &self,
        org_id: &OrgId,
        monitor: &Monitor,
    ) -> Result<Vec<AssetView>, CommandError> {
        let group = match monitor.scope.as_ref() {
            Some(MonitorScope::Asset(a)) => {
                return Ok(self.read.asset(org_id, a).await?.into_iter().collect())
            }
            Some(MonitorScope::Group(g)) => g,
            None => return Ok(vec![]),
        };
        let filter = AssetFilter {
            group_id: Some(group.to_string()),
            ..AssetFilter::default()
        };
        let mut out = vec![];
        for page in 1.. {
            let p = PageRequest {
                page,
                per_page: 100,
            };
            let got = self.read.assets(org_id, &filter, p).await?;
            let done = got.items.len() < 100;
            out.extend(got.items);
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// Run every monitor that is due, as `meta`'s actor; answers how many ran. A monitor that
    /// fails is logged and retried at the next pass.
    pub async fn run_due_monitors(&self, meta: &EventMeta) -> Result<usize, CommandError> {
        let now = chrono::Utc::now().timestamp_micros();
        let mut ran = 0;
        for due in self.read.due_monitors(now, 100).await? {
            let plan = due.plan;
            match self
                .run_monitor(meta, &due.org_id, plan, &due.monitor_id, None)
                .await
            {
                Ok(Some(_)) => ran += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, monitor = %due.monitor_id, "monitor run failed")
                }
            }
        }
        Ok(ran)
    }
}
