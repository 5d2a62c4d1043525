//! The pure domain of easm: commands are decided into events, and events evolve aggregate state.
//! Nothing here performs I/O; the store and the API supply whatever a decision needs to know.

mod alert;
mod asset;
mod asset_value;
mod discovery;
mod duration;
mod error;
mod finding;
mod group;
mod job;
mod monitor;
mod nuclei;
mod organization;
mod plans;
mod risk;
mod roles;
mod scan;
mod webhook;

pub use alert::{changes, new_subdomain, Alert, AlertStatus, Change, ALERT_STATUSES};
pub use asset::{add_assets, Asset, AssetPatch, Inventory, NewAsset, TagList};
pub use asset_value::{normalize_value, AssetType, Criticality};
pub use discovery::{validate_domains, DiscoveryJob, MAX_DOMAINS};
pub use duration::parse_duration;
pub use error::{DomainError, ItemError};
pub use finding::{finding_id, validate_detection, Finding};
pub use group::{validate_group_name, Group};
pub use job::{DetectedBy, JobStatus};
pub use monitor::{Monitor, MonitorScope, MonitorSpec};
pub use nuclei::{NucleiReader, Parsed};
pub use organization::{create_org, validate_name, NewKey, Organization};
pub use plans::{Limits, Plan};
pub use risk::{risk_score, AssetRisk};
pub use roles::{Grants, Permission, Role};
pub use scan::{
    active_scan_key, scan_host, validate_ports, validate_profile, ScanJob, MAX_PORTS, PROFILES,
};
pub use webhook::{
    audit_webhook_id, batching, credential_names, is_audit_webhook, is_forbidden_address,
    subscribed, validate_endpoint_url, validate_event_filters, validate_proxy_url,
    validate_webhook_url, OptionsSpec, Patch, TlsSpec, Webhook, WebhookSpec, WriteOnly, MASK,
    OWNED_HEADERS,
};

/// State rebuilt from a stream: every aggregate starts empty and folds its events in order.
pub trait Aggregate: Default {
    fn apply(&mut self, event: &easm_events::Event);

    fn from_events<'a>(events: impl IntoIterator<Item = &'a easm_events::Event>) -> Self {
        let mut s = Self::default();
        for e in events {
            s.apply(e);
        }
        s
    }
}
