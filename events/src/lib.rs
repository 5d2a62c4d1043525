//! The easm event catalogue: the public, versioned contract that the API, webhook receivers and
//! audit/replay tooling all read. See `events/README.md` for the envelope, the canonical encoding
//! used by the per-organization hash chain, and the schema-version policy.

mod catalogue;
mod chain;
mod discovery;
mod endpoint_options;
mod envelope;
mod export;
pub mod formats;
mod ids;
mod jcs;
mod monitors;
mod names;
mod payload;
mod scans;
mod upcast;

#[cfg(test)]
mod schema_check;

pub use catalogue::*;
pub use chain::{canonical_encoding, chain_hash, hash_holds, GENESIS_HASH};
pub use envelope::{
    format_timestamp, from_micros, parse_timestamp, Actor, ActorKind, EventMeta, RecordedEvent,
};
pub use export::{
    digest_line, export_line, export_value, public_key, verify, DigestFacts, Tampered, Verified,
    DIGEST_FORMAT,
};
pub use ids::{
    AlertId, AssetId, DiscoveryJobId, FindingId, GroupId, KeyId, MonitorId, OrgId, ScanJobId,
    UserId, WebhookId,
};
pub use names::{
    DeliveryOrdering, EndpointKind, FindingStatus, KeyKind, MonitorKind, PayloadFormat, Plan, Role,
    Severity,
};
pub use payload::{
    audit_message_id, audit_payload, message_id, payload, test_payload, PAYLOAD_VERSION,
};
pub use upcast::{decode, decode_str, DecodeError};
