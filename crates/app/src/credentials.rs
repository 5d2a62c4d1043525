//! Ids and secrets commands hand out: API keys (kept only as SHA-256) and webhook signing
//! secrets (Standard Webhooks' `whsec_` form).

use base64::Engine;
use easm_events::{KeyId, KeyKind};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A new id of any kind: a UUIDv7, so ids sort by creation time.
pub fn new_id<T: From<String>>() -> T {
    T::from(Uuid::now_v7().to_string())
}

/// A new key (REST or MCP). Only its SHA-256 is kept.
pub struct IssuedKey {
    pub key_id: KeyId,
    pub secret: String,
}

impl IssuedKey {
    /// `ag_sk_` (REST) or `mcp_sk_` (MCP) and 32 random bytes, base64url.
    pub(crate) fn generate(kind: KeyKind) -> Self {
        IssuedKey {
            key_id: new_id(),
            secret: format!(
                "{}{}",
                kind.secret_prefix(),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes())
            ),
        }
    }

    pub(crate) fn hash(&self) -> String {
        hash_key(&self.secret)
    }

    /// The kind's prefix and six characters of the key, so people can tell keys apart.
    pub(crate) fn prefix(&self) -> String {
        let kind = self.secret.find("_sk_").map_or(0, |at| at + 4);
        self.secret.chars().take(kind + 6).collect()
    }
}

pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A webhook signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks).
pub(crate) fn webhook_secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random_bytes())
    )
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}
