//! Webhook signing secrets. Kept out of the immutable, exported event log; several may be valid
//! at once while a rotation's grace period runs.

use crate::{db::Db, error::StoreError, now_micros};
use easm_events::WebhookId;

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
