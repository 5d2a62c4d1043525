//! The one configuration of easm: every flag and environment variable, parsed into what it
//! means (durations as `Duration`, roles and plans as enums, addresses as addresses) before any
//! work starts, so a bad setting is refused with its name and nothing is half started.

use anyhow::Context;
use easm_bus::BusConfig;
use easm_delivery::{parse_duration, DeliveryConfig, RetrySchedule};
use easm_domain::{Plan, Role};
use easm_events::KeyKind;
use easm_scanner::discovery::{DiscoveryConfig, Module};
use easm_scanner::dns::{self, Dns};
use easm_scanner::ScanConfig;
use easm_store::{Db, DbConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// `easm`: the server, the delivery and scan side alone, and the tools over the same store.
#[derive(clap::Parser)]
#[command(
    name = "easm",
    version,
    about = "External Attack Surface Management backend"
)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run the HTTP API, the outbox relay (with NATS), delivery and scan workers.
    Serve {
        #[arg(long, env = "EASM_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Serve the MCP server (`/mcp`, and `/`) on this address too; it is always at `/mcp` of
        /// the API's address.
        #[arg(long, env = "EASM_MCP_LISTEN")]
        mcp_listen: Option<String>,
        /// Do not create the `default` organization on an empty store.
        #[arg(long)]
        no_bootstrap: bool,
        /// Reverse proxies (addresses and CIDR networks, comma-separated) whose `Forwarded` or
        /// `X-Forwarded-For` headers give the client's address; from others they are ignored.
        #[arg(long, env = "EASM_TRUSTED_PROXIES", default_value = "", value_parser = easm_api::TrustedProxies::from_str)]
        trusted_proxies: easm_api::TrustedProxies,
        /// Serve `GET /metrics` (Prometheus text, no API key: keep it inside the network).
        #[arg(long, env = "EASM_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
        metrics: bool,
        #[command(flatten)]
        delivery: DeliveryArgs,
        #[command(flatten)]
        scan: ScanArgs,
        #[command(flatten)]
        stopping: StopArgs,
    },
    /// Run only the background side (relay, fan-out, delivery and scan workers), to scale it
    /// apart from the API.
    Deliver {
        #[command(flatten)]
        delivery: DeliveryArgs,
        #[command(flatten)]
        scan: ScanArgs,
        #[command(flatten)]
        stopping: StopArgs,
    },
    /// Organizations, members and API keys.
    Admin {
        #[command(subcommand)]
        command: crate::admin::Admin,
    },
    /// The verifiable audit export: export, verify, public-key.
    Audit {
        #[command(subcommand)]
        command: crate::audit::Audit,
    },
    /// Replay one organization's log up to a moment into a SQLite snapshot of its read models.
    Replay(crate::replay::ReplayArgs),
    /// The stdio bridge of the MCP server, for clients that only launch local commands (Claude
    /// Desktop): speaks MCP over stdin/stdout and forwards every message to the HTTP endpoint.
    Mcp {
        /// The MCP endpoint, e.g. https://easm.example.com/mcp.
        #[arg(long)]
        url: String,
        /// The MCP key (mcp_sk_...).
        #[arg(long, env = "EASM_MCP_KEY", hide_env_values = true)]
        key: String,
    },
    /// Print docs/mcp-tools.md: every MCP tool with its input schema, from the tool registry.
    McpToolsDoc,
    /// Read models.
    Projections {
        #[command(subcommand)]
        command: Projections,
    },
}

#[derive(clap::Subcommand)]
pub enum Projections {
    /// Drop the read models and rebuild them from the event log.
    Rebuild,
    /// Replay the log into a shadow database and compare it row by row with the read models;
    /// prints the differences and exits 1 on any.
    Verify,
}

/// Where the store is: the embedded SQLite file, or PostgreSQL.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Directory of the embedded SQLite database.
    #[arg(long, global = true, env = "EASM_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://...). When set, it is used instead of the embedded SQLite file.
    #[arg(long, global = true, env = "EASM_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl StoreArgs {
    /// Open the store (migrations applied), as every command of both binaries does.
    pub async fn open(&self) -> anyhow::Result<Db> {
        let config = DbConfig::from_settings(self.database_url.as_deref(), &self.data_dir);
        Db::connect(&config).await.context("opening the database")
    }
}

/// How `serve` and `deliver` stop (SIGTERM, SIGINT).
#[derive(clap::Args, Clone)]
pub struct StopArgs {
    /// How long requests, delivery attempts and scan jobs under way are given to finish once the
    /// process is asked to stop; event streams end at once (units ms, s, m).
    #[arg(long, env = "EASM_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Webhook delivery and the event bus, for `serve` and `deliver` alike.
#[derive(clap::Args, Clone)]
pub struct DeliveryArgs {
    /// Allow http and private, loopback or link-local addresses as webhook targets (tests,
    /// receivers on the same network). Off by default: a tenant must not reach our network.
    #[arg(long, env = "EASM_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Proxy (http or https URL) that webhook and native-destination requests go through when
    /// their endpoint names none. Proxy variables of the environment (`HTTPS_PROXY`...) are
    /// never used.
    #[arg(long, env = "EASM_WEBHOOK_PROXY")]
    pub webhook_proxy: Option<String>,
    /// Public URL of this server: links in Slack and Teams messages start from it.
    #[arg(long, env = "EASM_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Delays of the retries after the first attempt, comma-separated (units ms, s, m, h, d).
    #[arg(long, env = "EASM_WEBHOOK_RETRY_SCHEDULE", default_value = easm_delivery::DEFAULT_SCHEDULE, value_parser = RetrySchedule::parse)]
    pub webhook_retry_schedule: RetrySchedule,
    /// Attempts in flight to one endpoint, per process.
    #[arg(long, env = "EASM_WEBHOOK_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub webhook_concurrency: u32,
    /// Attempts per second to one endpoint, per process.
    #[arg(long, env = "EASM_WEBHOOK_RATE", default_value = "50", value_parser = positive_rate)]
    pub webhook_rate: f64,
    /// An endpoint whose every attempt failed for this long is disabled (`endpoint.disabled`).
    #[arg(long, env = "EASM_WEBHOOK_DISABLE_AFTER", default_value = "5d", value_parser = parse_duration)]
    pub webhook_disable_after: Duration,
    /// NATS server with JetStream; when set, committed events travel through it.
    #[arg(long, env = "EASM_NATS_URL")]
    pub nats_url: Option<String>,
    /// JetStream stream of the events.
    #[arg(long, env = "EASM_NATS_STREAM", default_value = "EASM_EVENTS")]
    pub nats_stream: String,
    /// Subjects are `<prefix>.<org id>.<event type>`.
    #[arg(long, env = "EASM_NATS_SUBJECT_PREFIX", default_value = "easm.events")]
    pub nats_subject_prefix: String,
    /// How often the process draining the outbox looks for commits it was not told of: on
    /// PostgreSQL every process tells the others of its commits (LISTEN/NOTIFY), so this only
    /// bounds a lost notice; SQLite's processes are not told (units ms, s, m).
    #[arg(long, env = "EASM_OUTBOX_POLL", default_value = "200ms", value_parser = at_least(Duration::from_millis(10)))]
    pub outbox_poll: Duration,
}

impl DeliveryArgs {
    /// The delivery worker's settings; `holder` names this process on its claims.
    pub fn delivery(&self, holder: &str) -> DeliveryConfig {
        let mut config = DeliveryConfig::new(holder);
        config.schedule = self.webhook_retry_schedule.clone();
        config.concurrency = self.webhook_concurrency as usize;
        config.rate = self.webhook_rate;
        config.disable_after = self.webhook_disable_after;
        config.allow_private = self.webhook_allow_private;
        config.proxy = self.webhook_proxy.clone().filter(|p| !p.is_empty());
        config
    }

    /// What rendering messages for native destinations and chat needs of this server.
    pub fn rendering(&self) -> easm_events::formats::Context {
        easm_events::formats::Context {
            public_url: self.public_url.clone().filter(|u| !u.is_empty()),
            hostname: hostname(),
        }
    }

    /// The bus, when a NATS server is set (an empty `EASM_NATS_URL` means none).
    pub fn bus(&self, holder: &str) -> Option<BusConfig> {
        let url = self.nats_url.as_deref().filter(|u| !u.is_empty())?;
        let mut bus = BusConfig::new(url, holder);
        bus.stream = self.nats_stream.clone();
        bus.subject_prefix = self.nats_subject_prefix.clone();
        bus.idle = self.outbox_poll;
        Some(bus)
    }
}

/// The scan workers and the monitor scheduler.
#[derive(clap::Args, Clone)]
pub struct ScanArgs {
    /// Let the scanner probe loopback, private, link-local, CGNAT and metadata addresses (tests,
    /// labs). Off by default: a tenant must not probe the server's own network.
    #[arg(long, env = "EASM_SCAN_ALLOW_PRIVATE")]
    pub scan_allow_private: bool,
    /// DNS servers (`ip` or `ip:port`, comma-separated, asked in turn) the scanner and
    /// discovery ask instead of the system's resolvers.
    #[arg(long, env = "EASM_SCAN_RESOLVER", value_parser = Resolvers::parse)]
    pub scan_resolver: Option<Resolvers>,
    /// Scan jobs one process runs at once; 0 runs no scan worker in this process.
    #[arg(long, env = "EASM_SCAN_WORKERS", default_value_t = 2)]
    pub scan_workers: usize,
    /// How long a worker's hold on a job lasts without renewal; a dead worker's job is taken
    /// over after it (units ms, s, m, h).
    #[arg(long, env = "EASM_SCAN_LEASE", default_value = "30s", value_parser = at_least(Duration::from_secs(1)))]
    pub scan_lease: Duration,
    /// The discovery modules that may run, comma-separated (`permutations` only in deep jobs).
    #[arg(long, env = "EASM_DISCOVERY_MODULES", default_value = "ct,axfr,bruteforce,permutations,tls,reverse", value_parser = parse_modules)]
    pub discovery_modules: Modules,
    /// A crt.sh-compatible certificate transparency service.
    #[arg(long, env = "EASM_DISCOVERY_CT_URL", default_value = "https://crt.sh")]
    pub discovery_ct_url: String,
    /// The port name servers are asked for zone transfers on (53 but in labs and tests).
    #[arg(long, env = "EASM_DISCOVERY_AXFR_PORT", default_value_t = 53)]
    pub discovery_axfr_port: u16,
    /// Ports whose certificates discovery reads on found hosts, comma-separated (deep jobs add
    /// 4443 and 9443).
    #[arg(
        long,
        env = "EASM_DISCOVERY_TLS_PORTS",
        default_value = "443,8443",
        value_delimiter = ','
    )]
    pub discovery_tls_ports: Vec<u16>,
    /// Names one discovery job resolves at once.
    #[arg(long, env = "EASM_DISCOVERY_CONCURRENCY", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub discovery_concurrency: u32,
    /// How often monitors are checked for a due run (units ms, s, m, h).
    #[arg(long, env = "EASM_MONITOR_INTERVAL", default_value = "30s", value_parser = at_least(Duration::from_millis(100)))]
    pub monitor_interval: Duration,
}

impl ScanArgs {
    /// No scan worker (delivery benchmarks measure delivery alone).
    pub fn disabled() -> Self {
        ScanArgs {
            scan_allow_private: false,
            scan_resolver: None,
            scan_workers: 0,
            discovery_modules: Modules(Module::ALL.to_vec()),
            discovery_ct_url: "https://crt.sh".into(),
            discovery_axfr_port: 53,
            discovery_tls_ports: vec![443, 8443],
            discovery_concurrency: 256,
            scan_lease: Duration::from_secs(30),
            monitor_interval: Duration::from_secs(30),
        }
    }

    /// The DNS servers to ask; empty for the system's.
    pub fn resolvers(&self) -> &[SocketAddr] {
        self.scan_resolver.as_ref().map_or(&[], |r| &r.0)
    }

    /// Fails when the system's DNS configuration cannot be read and no resolver is set.
    pub fn scan(&self) -> Result<ScanConfig, String> {
        let dns = Dns::new(self.resolvers(), dns::TIMEOUT)?;
        Ok(ScanConfig {
            allow_private: self.scan_allow_private,
            ..ScanConfig::new(dns)
        })
    }
}

impl ScanArgs {
    /// What discovery jobs run with, resolving through `dns`.
    pub fn discovery(&self, dns: Dns) -> DiscoveryConfig {
        DiscoveryConfig {
            dns,
            modules: self.discovery_modules.0.clone(),
            ct_url: self.discovery_ct_url.clone(),
            axfr_port: self.discovery_axfr_port,
            tls_ports: self.discovery_tls_ports.clone(),
            allow_private: self.scan_allow_private,
            concurrency: self.discovery_concurrency as usize,
            timeout: Duration::from_secs(5),
        }
    }
}

/// `EASM_DISCOVERY_MODULES`: module names, comma-separated; empty runs none.
#[derive(Clone, Debug)]
pub struct Modules(pub Vec<Module>);

fn parse_modules(s: &str) -> Result<Modules, String> {
    s.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| {
            Module::parse(m).ok_or_else(|| {
                let names: Vec<&str> = Module::ALL.iter().map(|m| m.as_str()).collect();
                format!("{m}: a discovery module is one of {}", names.join(", "))
            })
        })
        .collect::<Result<_, _>>()
        .map(Modules)
}

/// `EASM_SCAN_RESOLVER`: DNS servers' addresses, comma-separated, port 53 unless given; empty
/// means the system's resolvers.
#[derive(Clone, Debug)]
pub struct Resolvers(Vec<SocketAddr>);

impl Resolvers {
    fn parse(s: &str) -> Result<Resolvers, String> {
        s.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse()
                    .or_else(|_| a.parse::<IpAddr>().map(|ip| (ip, 53).into()))
                    .map_err(|_| format!("{a} is not an ip or ip:port"))
            })
            .collect::<Result<_, _>>()
            .map(Resolvers)
    }
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s}: must be a number above 0")),
    }
}

/// A duration with a unit, no shorter than `min`.
fn at_least(min: Duration) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |s| {
        let d = parse_duration(s)?;
        if d < min {
            return Err(format!("{s}: must be at least {min:?}"));
        }
        Ok(d)
    }
}

pub fn parse_plan(s: &str) -> Result<Plan, String> {
    one_of("plan", s, Plan::ALL, Plan::as_str)
}

pub fn parse_role(s: &str) -> Result<Role, String> {
    one_of("role", s, Role::ALL, Role::as_str)
}

pub fn parse_key_kind(s: &str) -> Result<KeyKind, String> {
    one_of("kind", s, KeyKind::ALL, KeyKind::as_str)
}

/// The value of `all` named `s`, or an error listing their names.
fn one_of<T: Copy>(
    what: &str,
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    all.iter().copied().find(|v| name(*v) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
        format!("{s}: the {what} is one of {}", names.join(", "))
    })
}

/// This machine's name, as syslog messages and HEC events name their origin.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "easm".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Settings {
        #[command(flatten)]
        delivery: DeliveryArgs,
        #[command(flatten)]
        scan: ScanArgs,
    }

    fn parse(args: &[&str]) -> Result<Settings, clap::Error> {
        Settings::try_parse_from(std::iter::once("easm").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.scan.scan_lease, Duration::from_secs(30));
        assert_eq!(s.scan.monitor_interval, Duration::from_secs(30));
        assert_eq!(s.scan.scan_workers, 2);
        assert_eq!(
            s.delivery.webhook_disable_after,
            Duration::from_secs(5 * 86400)
        );
        assert_eq!(s.delivery.webhook_retry_schedule.retries(), 7);
        assert_eq!(s.delivery.webhook_rate, 50.0);
        assert!(s.delivery.bus("me").is_none());
    }

    #[test]
    fn durations_rates_and_resolvers_are_checked() {
        assert!(parse(&["--scan-lease", "500ms"]).is_err());
        assert!(parse(&["--monitor-interval", "50ms"]).is_err());
        assert!(parse(&["--webhook-disable-after", "5"]).is_err());
        assert!(parse(&["--webhook-rate", "0"]).is_err());
        assert!(parse(&["--scan-resolver", "dns.example"]).is_err());
        assert!(parse(&["--discovery-modules", "ct,whois"]).is_err());
        let only = parse(&["--discovery-modules", "axfr, tls"]).unwrap();
        assert_eq!(
            only.scan.discovery_modules.0,
            vec![Module::Axfr, Module::Tls]
        );
        assert!(parse(&["--scan-resolver", "127.0.0.1,dns.example"]).is_err());
        let s = parse(&[
            "--scan-resolver",
            "127.0.0.1, [::1]:5353",
            "--monitor-interval",
            "200ms",
        ])
        .unwrap();
        let expected: Vec<SocketAddr> = vec![
            "127.0.0.1:53".parse().unwrap(),
            "[::1]:5353".parse().unwrap(),
        ];
        assert_eq!(s.scan.resolvers(), expected);
        assert_eq!(s.scan.monitor_interval, Duration::from_millis(200));
        let none: &[SocketAddr] = &[];
        assert_eq!(
            parse(&["--scan-resolver", ""]).unwrap().scan.resolvers(),
            none
        );
    }

    #[test]
    fn plans_and_roles_parse_to_their_enums() {
        assert_eq!(parse_plan("pro"), Ok(Plan::Pro));
        assert_eq!(parse_role("analyst"), Ok(Role::Analyst));
        assert!(parse_role("root")
            .unwrap_err()
            .contains("viewer, analyst, admin, owner"));
    }
}
