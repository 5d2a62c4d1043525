//! Wildcard zones: before trusting that a name under a zone exists, random labels under that
//! zone are resolved; when they answer, the zone has a wildcard, and a candidate whose answers
//! are all wildcard answers is one of its reflections, not a real name (as puredns does).

use crate::dns::{Dns, Resolved};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::Mutex;

/// Random labels resolved per zone.
const PROBES: usize = 3;

/// What each zone's wildcard answers, found once per zone and job.
#[derive(Default)]
pub struct Wildcards {
    zones: Mutex<BTreeMap<String, Option<BTreeSet<String>>>>,
    filtered: Mutex<BTreeMap<String, u32>>,
}

fn answers(r: &Resolved) -> BTreeSet<String> {
    r.addresses
        .iter()
        .map(ToString::to_string)
        .chain(r.cnames.iter().cloned())
        .collect()
}

fn random_label() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "easm-{}",
        Alphanumeric
            .sample_string(&mut rand::thread_rng(), 16)
            .to_ascii_lowercase()
    )
}

impl Wildcards {
    /// The wildcard answers of `zone`, if it has a wildcard.
    async fn of(&self, dns: &Dns, zone: &str) -> Option<BTreeSet<String>> {
        let mut zones = self.zones.lock().await;
        if let Some(known) = zones.get(zone) {
            return known.clone();
        }
        let mut seen = BTreeSet::new();
        for _ in 0..PROBES {
            if let Ok(r) = dns.probe(&format!("{}.{zone}", random_label())).await {
                seen.extend(answers(&r));
            }
        }
        let found = (!seen.is_empty()).then_some(seen);
        zones.insert(zone.to_string(), found.clone());
        found
    }

    /// Whether `name`, which resolved to `r`, only reflects its zone's wildcard (counted).
    pub async fn reflects(&self, dns: &Dns, name: &str, r: &Resolved) -> bool {
        let Some((_, zone)) = name.split_once('.') else {
            return false;
        };
        let Some(wild) = self.of(dns, zone).await else {
            return false;
        };
        let mine = answers(r);
        let reflected = !mine.is_empty() && mine.is_subset(&wild);
        if reflected {
            *self
                .filtered
                .lock()
                .await
                .entry(zone.to_string())
                .or_default() += 1;
        }
        reflected
    }

    /// Every zone found to have a wildcard, its answers and how many names it hid.
    pub async fn report(&self) -> Vec<easm_events::Wildcard> {
        let zones = self.zones.lock().await;
        let filtered = self.filtered.lock().await;
        zones
            .iter()
            .filter_map(|(zone, answers)| {
                Some(easm_events::Wildcard {
                    zone: zone.clone(),
                    answers: answers.as_ref()?.iter().cloned().collect(),
                    filtered: filtered.get(zone).copied().unwrap_or(0),
                })
            })
            .collect()
    }
}
