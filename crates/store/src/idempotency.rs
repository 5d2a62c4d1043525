//! Stored answers to POST requests that carried an `Idempotency-Key`, so a retried request gets
//! the first answer instead of acting twice.

use crate::{db::Db, error::StoreError, now_micros};
use easm_events::OrgId;
use sqlx::Row;

/// How long a key is remembered.
const RETENTION_MICROS: i64 = 24 * 3600 * 1_000_000;
/// A request still "in progress" after this long is taken to have died with its process.
const STALE_PENDING_MICROS: i64 = 60 * 1_000_000;

pub enum Claim {
    /// First use: run the request, then `complete` or `abandon`.
    New,
    /// Same key, same request, finished: answer this.
    Replay { status: u16, body: String },
    /// Same key, different request.
    Mismatch,
    /// Same key, same request, still running.
    InProgress,
}

#[derive(Clone, Debug)]
pub struct IdempotencyStore {
    db: Db,
}

impl IdempotencyStore {
    pub fn new(db: Db) -> Self {
        IdempotencyStore { db }
    }

    pub async fn claim(
        &self,
        org_id: &OrgId,
        key: &str,
        fingerprint: &str,
    ) -> Result<Claim, StoreError> {
        let now = now_micros();
        let mut tx = self.db.writer().begin().await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE org_id = $1 AND idem_key = $2 \
             AND (created_at < $3 OR (status = 0 AND created_at < $4))",
        )
        .bind(org_id.as_str())
        .bind(key)
        .bind(now - RETENTION_MICROS)
        .bind(now - STALE_PENDING_MICROS)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (org_id, idem_key, fingerprint, status, body, created_at) \
             VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (org_id, idem_key) DO NOTHING",
        )
        .bind(org_id.as_str())
        .bind(key)
        .bind(fingerprint)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let claim = if inserted == 1 {
            Claim::New
        } else {
            let row = sqlx::query(
                "SELECT fingerprint, status, body FROM idempotency_keys WHERE org_id = $1 AND idem_key = $2",
            )
            .bind(org_id.as_str())
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
            let stored: String = row.try_get("fingerprint")?;
            let status: i64 = row.try_get("status")?;
            if stored != fingerprint {
                Claim::Mismatch
            } else if status == 0 {
                Claim::InProgress
            } else {
                Claim::Replay {
                    status: status as u16,
                    body: row.try_get("body")?,
                }
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    pub async fn complete(
        &self,
        org_id: &OrgId,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE idempotency_keys SET status = $1, body = $2 WHERE org_id = $3 AND idem_key = $4")
            .bind(status as i64)
            .bind(body)
            .bind(org_id.as_str())
            .bind(key)
            .execute(self.db.writer())
            .await?;
        Ok(())
    }

    /// Forget a key whose request failed on our side, so the client's retry runs again.
    pub async fn abandon(&self, org_id: &OrgId, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE org_id = $1 AND idem_key = $2")
            .bind(org_id.as_str())
            .bind(key)
            .execute(self.db.writer())
            .await?;
        Ok(())
    }
}
