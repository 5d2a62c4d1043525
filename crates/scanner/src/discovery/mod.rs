//! Discovery: the names, addresses and TLS services under root domains that nobody listed.
//! Modules run one after another, each with real network I/O and its own time: certificate
//! transparency (`ct`), zone transfers from the domains' name servers (`axfr`), brute force
//! from a wordlist (`bruteforce`) and, for deep jobs, permutations of what was found
//! (`permutations`), both filtered of wildcard reflections; then the certificates of TLS
//! services on the found hosts (`tls`) and the reverse names of their addresses (`reverse`).
//! Names go to the job in batches as they are found; a module that fails is reported and the
//! others run on.

mod ct;
mod wildcard;
mod wordlist;

use crate::dns::{zone_transfer, Dns, Resolved};
use easm_events::{Detection, FoundAddress, FoundName, FoundService, ModuleRun};
use futures_util::stream::{self, StreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
pub use wildcard::Wildcards;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Module {
    Ct,
    Axfr,
    Bruteforce,
    Permutations,
    Tls,
    Reverse,
}

impl Module {
    /// In the order they run.
    pub const ALL: [Module; 6] = [
        Module::Ct,
        Module::Axfr,
        Module::Bruteforce,
        Module::Permutations,
        Module::Tls,
        Module::Reverse,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Module::Ct => "ct",
            Module::Axfr => "axfr",
            Module::Bruteforce => "bruteforce",
            Module::Permutations => "permutations",
            Module::Tls => "tls",
            Module::Reverse => "reverse",
        }
    }

    pub fn parse(s: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    pub dns: Dns,
    /// The modules that may run (`permutations` only in deep jobs).
    pub modules: Vec<Module>,
    /// A crt.sh-compatible service.
    pub ct_url: String,
    /// The port zone transfers are asked on (53 but in labs and tests).
    pub axfr_port: u16,
    /// Ports whose certificates are read on every found host; deep jobs add [`DEEP_TLS_PORTS`].
    pub tls_ports: Vec<u16>,
    /// Connect to loopback, private, link-local, CGNAT and metadata addresses (tests, labs).
    pub allow_private: bool,
    /// Names resolved at once.
    pub concurrency: usize,
    /// One connection's or request's time.
    pub timeout: Duration,
}

/// What a running job tells its worker.
#[derive(Debug)]
pub enum Report {
    Progress(u8, &'static str),
    Names(Vec<FoundName>),
}

/// What a job found beyond its names (those went out as reports).
#[derive(Debug, Default)]
pub struct Discovered {
    pub modules: Vec<ModuleRun>,
    pub ips: Vec<FoundAddress>,
    pub services: Vec<FoundService>,
    pub wildcard: Vec<easm_events::Wildcard>,
    /// Problems found, by root domain: zone transfers allowed, CNAMEs to missing names.
    pub detections: Vec<(String, Detection)>,
}

/// Further ports deep jobs read certificates on.
pub const DEEP_TLS_PORTS: [u16; 2] = [4443, 9443];

/// Names sent to the worker at most this many at a time.
const BATCH: usize = 500;

/// The names found so far, and those not yet reported.
struct Found {
    names: BTreeMap<String, FoundName>,
    unsent: BTreeMap<String, FoundName>,
    tx: mpsc::Sender<Report>,
}

impl Found {
    async fn add(&mut self, name: FoundName) {
        let entry = self
            .names
            .entry(name.name.clone())
            .or_insert_with(|| FoundName {
                name: name.name.clone(),
                expired: name.expired,
                ..Default::default()
            });
        let mut changed = entry.sources.is_empty();
        for s in &name.sources {
            if !entry.sources.contains(s) {
                entry.sources.push(s.clone());
                changed = true;
            }
        }
        for a in &name.addresses {
            if !entry.addresses.contains(a) {
                entry.addresses.push(a.clone());
                changed = true;
            }
        }
        if entry.cname.is_none() && name.cname.is_some() {
            entry.cname.clone_from(&name.cname);
            changed = true;
        }
        entry.expired &= name.expired;
        if changed {
            self.unsent.insert(entry.name.clone(), entry.clone());
        }
        if self.unsent.len() >= BATCH {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.unsent.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.unsent).into_values().collect();
        // A worker that stopped listening was cancelled; the job stops with it.
        let _ = self.tx.send(Report::Names(batch)).await;
    }
}

fn found(name: &str, source: Module, r: &Resolved) -> FoundName {
    FoundName {
        name: name.to_string(),
        addresses: r.addresses.iter().map(ToString::to_string).collect(),
        cname: r.cnames.first().cloned(),
        sources: vec![source.as_str().into()],
        expired: false,
    }
}

/// A strict subdomain of `domain`.
fn under(name: &str, domain: &str) -> bool {
    name.strip_suffix(domain)
        .and_then(|head| head.strip_suffix('.'))
        .is_some_and(|label| !label.is_empty())
}

/// A strict subdomain of one of `domains`.
fn in_scope(name: &str, domains: &[String]) -> bool {
    domains.iter().any(|d| under(name, d))
}

/// Resolve `candidates` with `concurrency` in flight; those that exist and are not a
/// wildcard's reflection, with what they answer. Brute force, permutations and the benchmark
/// all resolve through here.
pub async fn resolve_candidates(
    dns: &Dns,
    wildcards: &Wildcards,
    candidates: Vec<String>,
    concurrency: usize,
) -> Vec<(String, Resolved)> {
    stream::iter(candidates)
        .map(|name| async move {
            let r = dns.probe(&name).await.ok()?;
            if wildcards.reflects(dns, &name, &r).await {
                return None;
            }
            Some((name, r))
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// Run every enabled module over `domains`, reporting progress and names on `tx`.
pub async fn discover(
    cfg: &DiscoveryConfig,
    domains: &[String],
    deep: bool,
    tx: mpsc::Sender<Report>,
) -> Discovered {
    let modules: Vec<Module> = Module::ALL
        .into_iter()
        .filter(|m| cfg.modules.contains(m) && (deep || *m != Module::Permutations))
        .collect();
    let mut run = Run {
        cfg,
        domains,
        deep,
        found: Found {
            names: BTreeMap::new(),
            unsent: BTreeMap::new(),
            tx: tx.clone(),
        },
        wildcards: Wildcards::default(),
        out: Discovered::default(),
    };
    let total = modules.len().max(1);
    for (i, m) in modules.iter().enumerate() {
        let _ = tx
            .send(Report::Progress((i * 95 / total) as u8 + 1, m.as_str()))
            .await;
        let started = Instant::now();
        let before = run.found.names.len();
        let result = run.module(*m).await;
        run.found.flush().await;
        let (found, error) = match result {
            Ok(Some(n)) => (n, None),
            Ok(None) => ((run.found.names.len() - before) as u32, None),
            Err(e) => ((run.found.names.len() - before) as u32, Some(e)),
        };
        run.out.modules.push(ModuleRun {
            module: m.as_str().into(),
            found,
            duration_ms: started.elapsed().as_millis() as u64,
            error,
        });
    }
    let _ = tx.send(Report::Progress(97, "dangling")).await;
    run.dangling().await;
    run.found.flush().await;
    run.out.wildcard = run.wildcards.report().await;
    if run.out.ips.is_empty() {
        run.out.ips = run.addresses(BTreeMap::new());
    }
    run.out
}

struct Run<'a> {
    cfg: &'a DiscoveryConfig,
    domains: &'a [String],
    deep: bool,
    found: Found,
    wildcards: Wildcards,
    out: Discovered,
}

impl Run<'_> {
    /// Run one module; `Some(n)` when what it found is not counted in names (services).
    async fn module(&mut self, m: Module) -> Result<Option<u32>, String> {
        match m {
            Module::Ct => self.ct().await.map(|()| None),
            Module::Axfr => self.axfr().await.map(|()| None),
            Module::Bruteforce => {
                let labels = wordlist::labels(self.deep);
                let candidates = self
                    .domains
                    .iter()
                    .flat_map(|d| labels.iter().map(move |l| format!("{l}.{d}")))
                    .collect();
                self.brute(candidates, Module::Bruteforce).await;
                Ok(None)
            }
            Module::Permutations => {
                let known: Vec<String> = self.found.names.keys().cloned().collect();
                let candidates = self
                    .domains
                    .iter()
                    .flat_map(|d| wordlist::permutations(&known, d))
                    .filter(|n| !self.found.names.contains_key(n))
                    .collect();
                self.brute(candidates, Module::Permutations).await;
                Ok(None)
            }
            Module::Tls => self.tls().await.map(Some),
            Module::Reverse => self.reverse().await.map(|()| None),
        }
    }

    async fn brute(&mut self, candidates: Vec<String>, source: Module) {
        let cfg = self.cfg;
        for (name, r) in
            resolve_candidates(&cfg.dns, &self.wildcards, candidates, cfg.concurrency).await
        {
            self.found.add(found(&name, source, &r)).await;
        }
    }

    /// Resolve names known from elsewhere (certificates, reverse DNS) and record them; a name
    /// that does not resolve is recorded without addresses.
    async fn resolve_and_add(&mut self, names: BTreeMap<String, bool>, source: Module) {
        let dns = &self.cfg.dns;
        let resolved: Vec<(String, bool, Resolved)> = stream::iter(names)
            .map(|(name, expired)| async move {
                let r = dns.probe(&name).await.unwrap_or_default();
                (name, expired, r)
            })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await;
        for (name, expired, r) in resolved {
            let mut f = found(&name, source, &r);
            f.expired = expired;
            self.found.add(f).await;
        }
    }

    async fn ct(&mut self) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .user_agent("easm-discovery")
            .build()
            .map_err(|e| e.to_string())?;
        let mut errors = vec![];
        for d in self.domains {
            match ct::names(&client, &self.cfg.ct_url, d, self.cfg.timeout * 6).await {
                Ok(names) => self.resolve_and_add(names, Module::Ct).await,
                Err(e) => errors.push(e),
            }
        }
        errors_or_ok(errors)
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.cfg.allow_private || !easm_domain::is_forbidden_address(ip)
    }

    async fn axfr(&mut self) -> Result<(), String> {
        let mut errors = vec![];
        for domain in self.domains {
            let servers = match self.cfg.dns.name_servers(domain).await {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("{domain}: {e}"));
                    continue;
                }
            };
            let mut transferred = false;
            'servers: for ns in servers {
                let Ok(r) = self.cfg.dns.resolve(&ns).await else {
                    continue;
                };
                for ip in r.addresses {
                    if !self.allowed(ip) {
                        continue;
                    }
                    let server = SocketAddr::new(ip, self.cfg.axfr_port);
                    let Ok(records) =
                        zone_transfer(server, domain, self.cfg.timeout * 4, 100_000).await
                    else {
                        continue;
                    };
                    self.out.detections.push((
                        domain.clone(),
                        zone_transfer_finding(domain, &ns, records.len()),
                    ));
                    self.add_zone(domain, records).await;
                    transferred = true;
                    break 'servers;
                }
            }
            if !transferred {
                errors.push(format!("{domain}: no name server allowed a zone transfer"));
            }
        }
        // Refusal is the expected answer: only an outright failure to ask is an error.
        errors.retain(|e| !e.contains("no name server allowed"));
        errors_or_ok(errors)
    }

    async fn add_zone(&mut self, domain: &str, records: Vec<crate::dns::ZoneRecord>) {
        use crate::dns::Type;
        let mut names: BTreeMap<String, FoundName> = BTreeMap::new();
        for r in records {
            if !under(&r.name, domain) || r.name.starts_with("*.") {
                continue;
            }
            let entry = names.entry(r.name.clone()).or_insert_with(|| FoundName {
                name: r.name.clone(),
                sources: vec![Module::Axfr.as_str().into()],
                ..Default::default()
            });
            match r.record_type {
                Type::A | Type::AAAA => entry.addresses.push(r.data),
                Type::CNAME => {
                    entry.cname = Some(r.data.trim_end_matches('.').to_ascii_lowercase())
                }
                _ => {}
            }
        }
        for (_, n) in names {
            self.found.add(n).await;
        }
    }

    /// The certificates of TLS services on the found hosts: services, and the names they
    /// cover under the domains.
    async fn tls(&mut self) -> Result<u32, String> {
        let mut ports = self.cfg.tls_ports.clone();
        if self.deep {
            ports.extend(
                DEEP_TLS_PORTS
                    .iter()
                    .filter(|p| !self.cfg.tls_ports.contains(p)),
            );
        }
        let mut targets = vec![];
        for n in self.found.names.values() {
            let ip = n
                .addresses
                .iter()
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .find(|ip| ip.is_ipv4())
                .or_else(|| n.addresses.first().and_then(|a| a.parse().ok()));
            if let Some(ip) = ip.filter(|ip| self.allowed(*ip)) {
                for &port in &ports {
                    targets.push((n.name.clone(), SocketAddr::new(ip, port)));
                }
            }
        }
        let timeout = self.cfg.timeout;
        let seen: Vec<(String, u16, Vec<String>)> = stream::iter(targets)
            .map(|(host, addr)| async move {
                let sans = crate::tls::certificate_names(addr, &host, timeout)
                    .await
                    .ok()?;
                Some((host, addr.port(), sans))
            })
            .buffer_unordered(32)
            .filter_map(|x| async move { x })
            .collect()
            .await;
        let mut new = BTreeMap::new();
        for (host, port, sans) in &seen {
            for san in sans {
                let n = san.trim_start_matches("*.").to_ascii_lowercase();
                if in_scope(&n, self.domains) && !self.found.names.contains_key(&n) {
                    new.insert(n, false);
                }
            }
            self.out.services.push(FoundService {
                host: host.clone(),
                port: *port,
                service: "tls".into(),
                sans: sans.clone(),
            });
        }
        self.out
            .services
            .sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
        self.resolve_and_add(new, Module::Tls).await;
        Ok(seen.len() as u32)
    }

    async fn reverse(&mut self) -> Result<(), String> {
        let addresses: BTreeSet<IpAddr> = self
            .found
            .names
            .values()
            .flat_map(|n| n.addresses.iter().filter_map(|a| a.parse().ok()))
            .collect();
        let dns = &self.cfg.dns;
        let ptrs: BTreeMap<String, Vec<String>> = stream::iter(addresses)
            .map(|ip| async move { (ip.to_string(), dns.reverse(ip).await.unwrap_or_default()) })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await;
        let new: BTreeMap<String, bool> = ptrs
            .values()
            .flatten()
            .filter(|n| in_scope(n, self.domains) && !self.found.names.contains_key(*n))
            .map(|n| (n.clone(), false))
            .collect();
        self.out.ips = self.addresses(ptrs);
        self.resolve_and_add(new, Module::Reverse).await;
        Ok(())
    }

    /// Every address of the found names with the names resolving to it and its reverse names.
    fn addresses(&self, ptrs: BTreeMap<String, Vec<String>>) -> Vec<FoundAddress> {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in self.found.names.values() {
            for a in &n.addresses {
                by.entry(a.clone()).or_default().push(n.name.clone());
            }
        }
        by.into_iter()
            .map(|(address, names)| FoundAddress {
                ptr: ptrs.get(&address).cloned().unwrap_or_default(),
                address,
                names,
            })
            .collect()
    }

    /// Found names that are aliases of names that do not exist: anyone who registers the
    /// target serves content under the organization's name.
    async fn dangling(&mut self) {
        let aliases: Vec<(String, String)> = self
            .found
            .names
            .values()
            .filter(|n| n.addresses.is_empty())
            .filter_map(|n| Some((n.name.clone(), n.cname.clone()?)))
            .collect();
        let dns = &self.cfg.dns;
        let dangling: Vec<(String, String)> = stream::iter(aliases)
            .map(|(name, target)| async move {
                match dns.resolve(&target).await {
                    Err(crate::dns::LookupError::NxDomain(_)) => Some((name, target)),
                    _ => None,
                }
            })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .filter_map(|x| async move { x })
            .collect()
            .await;
        for (name, target) in dangling {
            let Some(domain) = self.domains.iter().find(|d| under(&name, d)) else {
                continue;
            };
            self.out
                .detections
                .push((domain.clone(), dangling_finding(&name, &target)));
        }
    }
}

fn errors_or_ok(errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn zone_transfer_finding(domain: &str, ns: &str, records: usize) -> Detection {
    Detection {
        template_id: "dns.zone-transfer".into(),
        title: format!("DNS zone transfer allowed for {domain}"),
        severity: "high".into(),
        category: "dns".into(),
        description: format!(
            "The name server {ns} answers AXFR requests for {domain} from anyone: the whole zone \
             ({records} records), internal names included, is public."
        ),
        evidence: format!("AXFR {domain} @{ns}: {records} records"),
        remediation:
            "Allow zone transfers only to the secondary name servers (by address or TSIG key)."
                .into(),
        references: vec!["https://www.rfc-editor.org/rfc/rfc5936#section-6".into()],
        matched_at: format!("{domain}@{ns}"),
        matcher_name: "axfr".into(),
        source: "discovery".into(),
        ..Default::default()
    }
}

fn dangling_finding(name: &str, target: &str) -> Detection {
    Detection {
        template_id: "dns.dangling-cname".into(),
        title: format!("Dangling CNAME: {name} points to {target}, which does not exist"),
        severity: "high".into(),
        category: "dns".into(),
        description: format!(
            "{name} is an alias of {target}, a name that does not exist (NXDOMAIN). Whoever \
             registers or claims {target} serves content as {name}: a subdomain takeover \
             candidate."
        ),
        evidence: format!("{name} CNAME {target}; {target}: NXDOMAIN"),
        remediation: format!("Remove the CNAME record of {name}, or claim {target} again."),
        references: vec![
            "https://developer.mozilla.org/en-US/docs/Web/Security/Subdomain_takeovers".into(),
        ],
        matched_at: name.into(),
        matcher_name: "cname".into(),
        source: "discovery".into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_is_strict_subdomains_of_the_domains() {
        let d = vec!["example.com".to_string()];
        assert!(in_scope("a.example.com", &d));
        assert!(in_scope("a.b.example.com", &d));
        assert!(!in_scope("example.com", &d));
        assert!(!in_scope("badexample.com", &d));
        assert!(!in_scope("a.example.com.evil.org", &d));
        assert_eq!(Module::parse("axfr"), Some(Module::Axfr));
        assert_eq!(Module::parse("nope"), None);
    }
}
