//! The scan workers' settings, and their access to the command side: the service starts,
//! advances, completes and fails jobs as the system actor `scanner`.

use easm_api::service::{new_id, Service, ServiceError};
use easm_events::{Actor, EventMeta, Observed};
use easm_scanner::worker::{JobHost, JobSpec};
use easm_scanner::{Progress, Report, ScanConfig};
use easm_store::Lease;
use std::time::Duration;

#[derive(clap::Args, Clone)]
pub struct ScanArgs {
    /// Let the scanner probe loopback, private, link-local, CGNAT and metadata addresses (tests,
    /// labs). Off by default: a tenant must not probe the server's own network.
    #[arg(long, env = "EASM_SCAN_ALLOW_PRIVATE")]
    pub scan_allow_private: bool,
    /// DNS server (`ip` or `ip:port`) the scanner asks instead of the system resolver.
    #[arg(long, env = "EASM_SCAN_RESOLVER")]
    pub scan_resolver: Option<String>,
    /// Scan jobs one process runs at once; 0 runs no scan worker in this process.
    #[arg(long, env = "EASM_SCAN_WORKERS", default_value_t = 2)]
    pub scan_workers: usize,
    /// How long a worker's hold on a job lasts without renewal; a dead worker's job is taken
    /// over after it (units ms, s, m, h).
    #[arg(long, env = "EASM_SCAN_LEASE", default_value = "30s")]
    pub scan_lease: String,
    /// How often monitors are checked for a due run (units ms, s, m, h).
    #[arg(long, env = "EASM_MONITOR_INTERVAL", default_value = "30s")]
    pub monitor_interval: String,
}

impl ScanArgs {
    /// No scan worker (delivery benchmarks measure delivery alone).
    pub fn disabled() -> Self {
        ScanArgs {
            scan_allow_private: false,
            scan_resolver: None,
            scan_workers: 0,
            scan_lease: "30s".into(),
            monitor_interval: "30s".into(),
        }
    }

    pub fn monitor_interval(&self) -> anyhow::Result<Duration> {
        let every = easm_delivery::parse_duration(&self.monitor_interval)
            .map_err(|e| anyhow::anyhow!("EASM_MONITOR_INTERVAL: {e}"))?;
        if every < Duration::from_millis(100) {
            anyhow::bail!("EASM_MONITOR_INTERVAL must be at least 100ms");
        }
        Ok(every)
    }

    pub fn config(&self) -> anyhow::Result<(ScanConfig, Duration)> {
        let resolver = match self.scan_resolver.as_deref().filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => Some(
                r.parse()
                    .or_else(|_| r.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                    .map_err(|_| {
                        anyhow::anyhow!("EASM_SCAN_RESOLVER: {r} is not an ip or ip:port")
                    })?,
            ),
        };
        let lease = easm_delivery::parse_duration(&self.scan_lease)
            .map_err(|e| anyhow::anyhow!("EASM_SCAN_LEASE: {e}"))?;
        if lease < Duration::from_secs(1) {
            anyhow::bail!("EASM_SCAN_LEASE must be at least 1s");
        }
        let scan = ScanConfig {
            allow_private: self.scan_allow_private,
            resolver,
            ..ScanConfig::default()
        };
        Ok((scan, lease))
    }
}

pub struct ServiceJobs(pub Service);

fn meta() -> EventMeta {
    EventMeta::new(Actor::system_part("scanner"), new_id())
}

fn text(e: ServiceError) -> String {
    e.to_string()
}

impl JobHost for ServiceJobs {
    async fn start(&self, org: &str, job: &str, worker: &str) -> Result<Option<JobSpec>, String> {
        let started = self
            .0
            .start_scan(&meta(), org, job, worker)
            .await
            .map_err(text)?;
        Ok(started.map(|(job, asset)| JobSpec {
            host: easm_domain::scan_host(&asset.asset_type, &asset.value),
            profile: job.profile,
            ports: job.ports,
        }))
    }

    async fn progress(&self, org: &str, job: &str, p: &Progress) -> Result<bool, String> {
        self.0
            .scan_progress(&meta(), org, job, p.percent, p.stage)
            .await
            .map_err(text)
    }

    async fn complete(
        &self,
        org: &str,
        job: &str,
        report: Report,
        ports: Vec<u16>,
    ) -> Result<(), String> {
        let observed = Observed {
            addresses: report.addresses.iter().map(|a| a.to_string()).collect(),
            cnames: report.cnames,
            ports_scanned: Some(report.ports_scanned as u32),
            services: report.services,
        };
        self.0
            .complete_scan(&meta(), org, job, &report.detections, observed, &ports)
            .await
            .map_err(text)
    }

    async fn fail(&self, org: &str, job: &str, reason: &str) -> Result<(), String> {
        self.0
            .fail_scan(&meta(), org, job, reason)
            .await
            .map_err(text)
    }
}

/// Run the monitors that are due, every `every`, as the system actor `scheduler`. One process
/// at a time holds the scheduler's lease (another takes over when it dies); even without it, a
/// run is recorded on the monitor's stream, so one due run is never recorded twice.
pub async fn run_monitors(
    service: Service,
    lease: Lease,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        match lease.acquire().await {
            Ok(true) => {
                let meta = EventMeta::new(Actor::system_part("scheduler"), new_id());
                if let Err(e) = service.run_due_monitors(&meta).await {
                    tracing::warn!(error = %e, "monitor scheduling failed; retrying");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "monitor scheduler lease unavailable"),
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    let _ = lease.release().await;
}
