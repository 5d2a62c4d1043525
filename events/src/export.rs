//! The verifiable export of an organization's log: NDJSON, one event a line (its canonical
//! object plus `position`, `prevHash` and `hash`), then one digest line signed with Ed25519.
//! The format and the checks are specified in `events/README.md` so that anyone can write a
//! verifier; [`verify`] is ours.

use crate::chain::{canonical_value, link_hash, sorted};
use crate::envelope::RecordedEvent;
use crate::jcs;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{json, Map, Value};

pub const DIGEST_FORMAT: &str = "easm-audit-export/v1";

/// One exported event: its canonical object with its position and chain links.
pub fn export_line(e: &RecordedEvent) -> String {
    export_value(e).to_string()
}

/// [`export_line`] before serialization (the event feed answers it inside a JSON page).
pub fn export_value(e: &RecordedEvent) -> Value {
    let mut v = canonical_value(e);
    let m = v.as_object_mut().expect("an object");
    m.insert("position".into(), json!(e.position));
    m.insert("prevHash".into(), json!(e.prev_hash));
    m.insert("hash".into(), json!(e.hash));
    sorted(v)
}

/// What the digest line states about the export; signed as its canonical JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestFacts {
    pub org_id: String,
    pub count: u64,
    /// `prevHash` of the first event (the chain's anchor), or of the next one when empty.
    pub first_prev_hash: String,
    pub last_hash: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub exported_at: String,
}

impl DigestFacts {
    fn unsigned(&self, public_key: &str) -> Value {
        sorted(json!({
            "digest": DIGEST_FORMAT,
            "orgId": self.org_id,
            "count": self.count,
            "firstPrevHash": self.first_prev_hash,
            "lastHash": self.last_hash,
            "since": self.since,
            "until": self.until,
            "exportedAt": self.exported_at,
            "algorithm": "ed25519",
            "publicKey": public_key,
        }))
    }
}

/// The public key (base64 of its 32 bytes) of a 32-byte Ed25519 secret.
pub fn public_key(secret: &[u8; 32]) -> String {
    B64.encode(SigningKey::from_bytes(secret).verifying_key().as_bytes())
}

/// The digest line, signed: the signature covers the line's JCS form without `signature`.
pub fn digest_line(facts: &DigestFacts, secret: &[u8; 32]) -> String {
    let key = SigningKey::from_bytes(secret);
    let mut v = facts.unsigned(&public_key(secret));
    let signature = key.sign(&jcs::to_vec(&v));
    v.as_object_mut()
        .expect("an object")
        .insert("signature".into(), json!(B64.encode(signature.to_bytes())));
    sorted(v).to_string()
}

/// Where and why an export fails verification (lines count from 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Tampered {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub org_id: String,
    pub count: u64,
    pub last_hash: String,
    pub public_key: String,
}

/// Whether an exported event hashes to `hash`: JCS, or the encoding of events hashed before it.
fn hash_holds(fields: &Map<String, Value>, prev_hash: &str, hash: &str) -> bool {
    let mut canonical = fields.clone();
    for k in ["position", "prevHash", "hash"] {
        canonical.remove(k);
    }
    let canonical = Value::Object(canonical);
    link_hash(prev_hash, &jcs::to_vec(&canonical)) == hash
        || link_hash(prev_hash, sorted(canonical).to_string().as_bytes()) == hash
}

/// Check an export line by line: every event's hash, the links and sequence numbers between
/// them, and the signed digest at the end. `trusted_key` (base64) overrides the key the digest
/// names, so a verifier that holds the server's key is not fooled by a re-signed file.
pub fn verify<I: IntoIterator<Item = String>>(
    lines: I,
    trusted_key: Option<&str>,
) -> Result<Verified, Tampered> {
    let fail = |line: usize, reason: String| Err(Tampered { line, reason });
    let mut first_prev: Option<String> = None;
    let mut last: Option<(i64, String, String)> = None; // (chainSeq, hash, orgId)
    let mut hashes = vec![];
    let mut n = 0;
    for text in lines {
        n += 1;
        let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&text) else {
            return fail(n, "not a JSON object".into());
        };
        if m.contains_key("digest") {
            return check_digest(n, &m, &hashes, first_prev, last, trusted_key);
        }
        let text_field = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(prev), Some(hash), Some(seq), Some(org)) = (
            text_field("prevHash"),
            text_field("hash"),
            m.get("chainSeq").and_then(Value::as_i64),
            text_field("orgId"),
        ) else {
            return fail(
                n,
                "not an exported event (prevHash, hash, chainSeq, orgId)".into(),
            );
        };
        if !hash_holds(&m, &prev, &hash) {
            return fail(n, "modified: the event does not hash to its hash".into());
        }
        match &last {
            None => first_prev = Some(prev.clone()),
            Some((last_seq, last_hash, last_org)) => {
                if &org != last_org {
                    return fail(
                        n,
                        format!("inserted: an event of another organization ({org})"),
                    );
                }
                if seq <= *last_seq {
                    return fail(
                        n,
                        format!("inserted or reordered: chainSeq {seq} after {last_seq}"),
                    );
                }
                if seq > last_seq + 1 {
                    return fail(
                        n,
                        format!(
                            "removed: chainSeq {} to {} are missing before this line",
                            last_seq + 1,
                            seq - 1
                        ),
                    );
                }
                if &prev != last_hash {
                    return fail(
                        n,
                        "inserted or modified: prevHash is not the previous line's hash".into(),
                    );
                }
            }
        }
        hashes.push(hash.clone());
        last = Some((seq, hash, org));
    }
    fail(n + 1, "no digest line: the export is truncated".into())
}

fn check_digest(
    n: usize,
    m: &Map<String, Value>,
    hashes: &[String],
    first_prev: Option<String>,
    last: Option<(i64, String, String)>,
    trusted_key: Option<&str>,
) -> Result<Verified, Tampered> {
    let fail = |reason: String| Err(Tampered { line: n, reason });
    let get = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if get("digest") != DIGEST_FORMAT || get("algorithm") != "ed25519" {
        return fail(format!("digest: not a {DIGEST_FORMAT} ed25519 digest"));
    }
    let key_text = trusted_key
        .map(str::to_string)
        .unwrap_or_else(|| get("publicKey"));
    let key = B64
        .decode(key_text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok());
    let Some(key) = key else {
        return fail("digest: the public key is not an Ed25519 key".into());
    };
    let signature = B64
        .decode(get("signature"))
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .map(|b| Signature::from_bytes(&b));
    let mut unsigned = m.clone();
    unsigned.remove("signature");
    let message = jcs::to_vec(&Value::Object(unsigned));
    if signature.is_none_or(|s| key.verify(&message, &s).is_err()) {
        return fail(
            "digest: the signature does not match (wrong key, or the digest was edited)".into(),
        );
    }
    if first_prev.is_some_and(|p| p != get("firstPrevHash")) {
        return Err(Tampered {
            line: 1,
            reason: "removed: the first events of the export are missing".into(),
        });
    }
    let last_hash = last
        .as_ref()
        .map(|l| l.1.clone())
        .unwrap_or_else(|| get("firstPrevHash"));
    if get("lastHash") != last_hash {
        return match hashes.iter().position(|h| *h == get("lastHash")) {
            Some(i) => Err(Tampered {
                line: i + 2,
                reason: "inserted: the digest's last event is the line before".into(),
            }),
            None => fail("removed: the last events of the export are missing".into()),
        };
    }
    let count = hashes.len() as u64;
    if m.get("count").and_then(Value::as_u64) != Some(count) {
        return fail(format!(
            "the digest counts {} events, the file holds {count}",
            m.get("count").unwrap_or(&Value::Null)
        ));
    }
    if let Some((_, _, org)) = &last {
        if *org != get("orgId") {
            return fail("digest: another organization's digest".into());
        }
    }
    Ok(Verified {
        org_id: get("orgId"),
        count,
        last_hash,
        public_key: B64.encode(key.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{chain_hash, Actor, ActorKind, Role, GENESIS_HASH};
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    const SECRET: [u8; 32] = [7; 32];

    fn event(seq: i64, prev: &str) -> RecordedEvent {
        let mut e = RecordedEvent {
            event_id: Uuid::from_u128(seq as u128),
            position: seq * 10,
            stream_id: format!("asset-{seq}"),
            stream_version: 1,
            event_type: "asset.removed".into(),
            schema_version: 1,
            occurred_at: Utc.timestamp_micros(1_700_000_000_000_000 + seq).unwrap(),
            org_id: "o1".into(),
            actor: Actor {
                kind: ActorKind::ApiKey,
                id: "k1".into(),
                role: Some(Role::Owner),
                source_ip: Some("203.0.113.7".into()),
                user_agent: Some("curl/8.5".into()),
            },
            request_id: "r".into(),
            correlation_id: "c".into(),
            causation_id: None,
            data: json!({"assetId": format!("a{seq}"), "note": "é \"q\" \n"}),
            chain_seq: seq,
            prev_hash: prev.into(),
            hash: String::new(),
            trace_parent: None,
        };
        e.hash = chain_hash(prev, &e);
        e
    }

    fn exported(n: i64) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_string();
        let mut lines = vec![];
        for seq in 1..=n {
            let e = event(seq, &prev);
            prev = e.hash.clone();
            lines.push(export_line(&e));
        }
        let facts = DigestFacts {
            org_id: "o1".into(),
            count: n as u64,
            first_prev_hash: GENESIS_HASH.into(),
            last_hash: prev,
            since: None,
            until: None,
            exported_at: "2026-11-23T00:00:00Z".into(),
        };
        lines.push(digest_line(&facts, &SECRET));
        lines
    }

    fn line_of(lines: Vec<String>) -> usize {
        verify(lines, None).unwrap_err().line
    }

    #[test]
    fn an_intact_export_verifies() {
        let v = verify(exported(5), Some(&public_key(&SECRET))).unwrap();
        assert_eq!((v.count, v.org_id.as_str()), (5, "o1"));
        assert!(verify(exported(0), None).is_ok());
    }

    #[test]
    fn every_kind_of_edit_is_found_at_its_line() {
        let mut modified = exported(5);
        modified[2] = modified[2].replace("a3", "a9");
        assert_eq!(line_of(modified), 3);
        let mut removed = exported(5);
        removed.remove(2);
        assert_eq!(line_of(removed), 3);
        let mut inserted = exported(5);
        let copy = inserted[1].clone();
        inserted.insert(2, copy);
        assert_eq!(line_of(inserted), 3);
        let mut reordered = exported(5);
        reordered.swap(2, 3);
        assert_eq!(line_of(reordered), 3);
        let mut first = exported(5);
        first.remove(0);
        assert_eq!(line_of(first), 1);
        let mut last = exported(5);
        last.remove(4);
        assert_eq!(line_of(last), 5);
        // A forged event linked properly to the last one, before the digest.
        let mut forged = exported(5);
        let last_hash = serde_json::from_str::<Value>(&forged[4]).unwrap()["hash"]
            .as_str()
            .unwrap()
            .to_string();
        forged.insert(5, export_line(&event(6, &last_hash)));
        assert_eq!(line_of(forged), 6);
        let mut digest = exported(5);
        digest[5] = digest[5].replace("\"count\":5", "\"count\":4");
        assert_eq!(line_of(digest), 6);
        let mut truncated = exported(5);
        truncated.pop();
        assert_eq!(line_of(truncated), 6);
    }

    #[test]
    fn a_trusted_key_rejects_a_resigned_file() {
        let other = public_key(&[9; 32]);
        let e = verify(exported(3), Some(&other)).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.reason.contains("signature"));
    }
}
