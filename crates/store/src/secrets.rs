//! Endpoints' secrets, kept out of the immutable, exported event log: signing secrets (several
//! may be valid at once while a rotation's grace period runs) and write-only credentials (header
//! values, tokens, API keys, client keys), of which the log only names the ones that changed.

use crate::{db::Db, error::StoreError, now_micros};
use easm_events::WebhookId;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct WebhookSecrets {
    db: Db,
}

impl WebhookSecrets {
    pub fn new(db: Db) -> Self {
        WebhookSecrets { db }
    }

    /// Make `secret` the current one; any previous current secret keeps signing until
    /// `previous_until` (epoch microseconds).
    pub async fn rotate_in(
        &self,
        webhook_id: &WebhookId,
        secret: &str,
        previous_until: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.writer().begin().await?;
        sqlx::query("UPDATE webhook_secrets SET expires_at = $1 WHERE webhook_id = $2 AND expires_at IS NULL")
            .bind(previous_until)
            .bind(webhook_id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO webhook_secrets (webhook_id, secret, created_at) VALUES ($1, $2, $3)",
        )
        .bind(webhook_id.as_str())
        .bind(secret)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Secrets that sign now, newest first.
    pub async fn active(&self, webhook_id: &WebhookId) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT secret FROM webhook_secrets WHERE webhook_id = $1 \
             AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC",
        )
        .bind(webhook_id.as_str())
        .bind(now_micros())
        .fetch_all(self.db.reader())
        .await?)
    }

    pub async fn forget(&self, webhook_id: &WebhookId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_secrets WHERE webhook_id = $1")
            .bind(webhook_id.as_str())
            .execute(self.db.writer())
            .await?;
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct WebhookCredentials {
    db: Db,
}

impl WebhookCredentials {
    pub fn new(db: Db) -> Self {
        WebhookCredentials { db }
    }

    /// Store (`Some`) or forget (`None`) values by name, all in one transaction.
    pub async fn apply(
        &self,
        webhook_id: &WebhookId,
        changes: &[(String, Option<String>)],
    ) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.writer().begin().await?;
        for (name, value) in changes {
            match value {
                Some(v) => {
                    sqlx::query(
                        "INSERT INTO webhook_credentials (webhook_id, name, value, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (webhook_id, name) \
                         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )
                    .bind(webhook_id.as_str())
                    .bind(name)
                    .bind(v)
                    .bind(now_micros())
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "DELETE FROM webhook_credentials WHERE webhook_id = $1 AND name = $2",
                    )
                    .bind(webhook_id.as_str())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every value of the endpoint, by name.
    pub async fn all(
        &self,
        webhook_id: &WebhookId,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT name, value FROM webhook_credentials WHERE webhook_id = $1")
                .bind(webhook_id.as_str())
                .fetch_all(self.db.reader())
                .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn forget(&self, webhook_id: &WebhookId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_credentials WHERE webhook_id = $1")
            .bind(webhook_id.as_str())
            .execute(self.db.writer())
            .await?;
        Ok(())
    }
}
