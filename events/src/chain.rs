//! The per-organization hash chain. Each event's hash is
//! `hex(SHA-256(prev_hash_hex || "\n" || canonical_encoding(event)))`, starting from
//! [`GENESIS_HASH`]. The canonical encoding is RFC 8785 (JSON Canonicalization Scheme), as
//! `events/README.md` states, so a third party recomputes it with any JCS implementation.
//!
//! Events recorded before the encoding was named JCS were hashed as serde_json writes the sorted
//! object ([`legacy_encoding`]): the same bytes except for numbers, which JCS writes as
//! ECMAScript does (`10` where serde_json wrote `10.0`). Verifiers accept either; the content
//! hashed is the same, so that admits no other event.

use crate::envelope::{format_timestamp, RecordedEvent};
use crate::jcs::Object;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The `prev_hash` of an organization's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The bytes that are hashed: the JCS form of the envelope without `position`, `prevHash` and
/// `hash` (the chain itself provides them) and `traceparent` (operational). Written member by
/// member (the same bytes as the JCS of [`canonical_value`]), without copying the event's data
/// into a map first.
pub fn canonical_encoding(e: &RecordedEvent) -> Vec<u8> {
    // An actor always serializes: its fields are strings.
    let actor = serde_json::to_value(&e.actor).unwrap_or_default();
    let mut out = Vec::with_capacity(512);
    let mut o = Object::new(&mut out);
    o.member("actor", &actor);
    match &e.causation_id {
        Some(c) => o.string("causationId", c),
        None => o.member("causationId", &Value::Null),
    };
    o.number("chainSeq", e.chain_seq)
        .string("correlationId", &e.correlation_id)
        .member("data", &e.data)
        .string("eventId", &e.event_id.to_string())
        .string("occurredAt", &format_timestamp(&e.occurred_at))
        .string("orgId", e.org_id.as_str())
        .string("requestId", &e.request_id)
        .number("schemaVersion", i64::from(e.schema_version))
        .string("streamId", &e.stream_id)
        .number("streamVersion", e.stream_version)
        .string("type", &e.event_type)
        .end();
    out
}

/// How events were hashed before JCS: sorted keys, serde_json's rendering.
fn legacy_encoding(e: &RecordedEvent) -> Vec<u8> {
    canonical_value(e).to_string().into_bytes()
}

/// The hashed object itself, keys sorted.
pub(crate) fn canonical_value(e: &RecordedEvent) -> Value {
    let v = json!({
        "actor": e.actor,
        "causationId": e.causation_id,
        "chainSeq": e.chain_seq,
        "correlationId": e.correlation_id,
        "data": e.data,
        "eventId": e.event_id.to_string(),
        "occurredAt": format_timestamp(&e.occurred_at),
        "orgId": e.org_id,
        "requestId": e.request_id,
        "schemaVersion": e.schema_version,
        "streamId": e.stream_id,
        "streamVersion": e.stream_version,
        "type": e.event_type,
    });
    sorted(v)
}

/// serde_json's default map is already ordered by key; rebuilding makes that independent of the
/// crate's feature flags, which another crate in a build could change.
pub(crate) fn sorted(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

pub fn chain_hash(prev_hash: &str, e: &RecordedEvent) -> String {
    link_hash(prev_hash, &canonical_encoding(e))
}

/// Whether `e.hash` is the hash of `e` after `prev_hash`, in either encoding.
pub fn hash_holds(prev_hash: &str, e: &RecordedEvent) -> bool {
    chain_hash(prev_hash, e) == e.hash || link_hash(prev_hash, &legacy_encoding(e)) == e.hash
}

pub(crate) fn link_hash(prev_hash: &str, encoded: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(encoded);
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, ActorKind, Role};
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn sample() -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::nil(),
            position: 7,
            stream_id: "asset-1".into(),
            stream_version: 1,
            event_type: "asset.removed".into(),
            schema_version: 1,
            occurred_at: Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            org_id: "o1".into(),
            actor: Actor {
                kind: ActorKind::ApiKey,
                id: "k1".into(),
                role: Some(Role::Owner),
                source_ip: None,
                user_agent: None,
            },
            request_id: "r".into(),
            correlation_id: "r".into(),
            causation_id: None,
            data: json!({"z": 1, "a": "é"}),
            chain_seq: 1,
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
            trace_parent: None,
        }
    }

    #[test]
    fn canonical_encoding_is_sorted_compact_and_excludes_position() {
        let s = String::from_utf8(canonical_encoding(&sample())).unwrap();
        assert_eq!(
            s,
            r#"{"actor":{"id":"k1","kind":"api_key","role":"owner"},"causationId":null,"chainSeq":1,"correlationId":"r","data":{"a":"é","z":1},"eventId":"00000000-0000-0000-0000-000000000000","occurredAt":"2023-11-14T22:13:20.123456Z","orgId":"o1","requestId":"r","schemaVersion":1,"streamId":"asset-1","streamVersion":1,"type":"asset.removed"}"#
        );
        let mut moved = sample();
        moved.position = 99;
        assert_eq!(
            chain_hash(GENESIS_HASH, &moved),
            chain_hash(GENESIS_HASH, &sample())
        );
    }

    /// The numbers RFC 8785 writes as ECMAScript does (its appendix B), and a key order by
    /// UTF-16 code units, where serde_json's rendering and byte order differ.
    #[test]
    fn the_encoding_is_jcs() {
        let mut e = sample();
        e.data = json!({"cvssScore": 10.0, "tiny": 1e-7, "huge": 1e21, "half": 0.5, "big": 1e16,
                        "\u{e000}": 1, "\u{1f600}": 2});
        let s = String::from_utf8(canonical_encoding(&e)).unwrap();
        assert!(
            s.contains("\"data\":{\"big\":10000000000000000,\"cvssScore\":10,\"half\":0.5,\"huge\":1e+21,\"tiny\":1e-7,\"\u{1f600}\":2,\"\u{e000}\":1}"),
            "{s}"
        );
        let legacy = String::from_utf8(legacy_encoding(&e)).unwrap();
        assert!(legacy.contains(r#""cvssScore":10.0"#), "{legacy}");
    }

    /// The envelope written member by member is what an independent RFC 8785 implementation
    /// makes of the whole object.
    #[test]
    fn the_envelope_encodes_as_serde_jcs_encodes_it() {
        let mut e = sample();
        e.causation_id = Some("c\u{1}\"".into());
        e.actor.source_ip = Some("203.0.113.9".into());
        e.actor.user_agent = Some("curl/8 é".into());
        e.data = json!({"b": [1.5, {"é": null}], "a": "x"});
        for e in [sample(), e] {
            assert_eq!(
                canonical_encoding(&e),
                serde_jcs::to_vec(&canonical_value(&e)).unwrap()
            );
        }
    }

    #[test]
    fn an_event_hashed_before_jcs_still_verifies() {
        let mut e = sample();
        e.data = json!({"cvssScore": 10.0});
        e.hash = link_hash(GENESIS_HASH, &legacy_encoding(&e));
        assert_ne!(e.hash, chain_hash(GENESIS_HASH, &e));
        assert!(hash_holds(GENESIS_HASH, &e));
        e.data = json!({"cvssScore": 9.0});
        assert!(
            !hash_holds(GENESIS_HASH, &e),
            "the content is still what is hashed"
        );
    }

    #[test]
    fn any_change_changes_the_hash() {
        let base = chain_hash(GENESIS_HASH, &sample());
        let mut e = sample();
        e.data = json!({"z": 2, "a": "é"});
        assert_ne!(chain_hash(GENESIS_HASH, &e), base);
        assert_ne!(chain_hash(&base, &sample()), base);
    }
}
