//! The server's audit signing key: an Ed25519 secret made on first use and kept in the
//! database, so every process signs with the same key and the public key stays stable.

use crate::{db::Db, error::StoreError, now_micros};

const AUDIT_SIGNING: &str = "audit-signing";

/// The 32-byte Ed25519 secret that signs audit exports.
pub async fn audit_signing_secret(db: &Db) -> Result<[u8; 32], StoreError> {
    let fresh: [u8; 32] = rand::random();
    // Two processes starting together: the first insert wins and both read it back.
    sqlx::query(
        "INSERT INTO server_keys (name, secret, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(AUDIT_SIGNING)
    .bind(hex::encode(fresh))
    .bind(now_micros())
    .execute(db.writer())
    .await?;
    let secret: String = sqlx::query_scalar("SELECT secret FROM server_keys WHERE name = $1")
        .bind(AUDIT_SIGNING)
        .fetch_one(db.writer())
        .await?;
    hex::decode(&secret)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(StoreError::Corrupt {
            position: 0,
            reason: "the audit signing key is not 32 hex-encoded bytes".into(),
        })
}
