//! The deliveries' history as the API shows it: each delivery with its attempts.

use crate::deliveries::{DeliveryQueue, PENDING};
use crate::error::StoreError;
use easm_events::WebhookId;
use sqlx::any::AnyRow;
use sqlx::FromRow;
use std::collections::HashMap;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The request that delivered it, when that carried several messages.
    pub last_batch_id: Option<String>,
    #[sqlx(skip)]
    pub attempt_log: Vec<AttemptRecord>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AttemptRecord {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub response: Option<String>,
    /// The request that carried this message with others, and how many it carried.
    pub batch_id: Option<String>,
    pub batch_size: Option<i64>,
}

const RECORD_COLUMNS: &str = "delivery_id, webhook_id, event_id, event_type, status, attempts, \
     next_attempt_at, last_status, last_error, created_at, updated_at, last_batch_id";

/// A delivery as stored: when it is due again matters only while it is pending.
fn record(r: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    let mut d = DeliveryRecord::from_row(r)?;
    d.next_attempt_at = d.next_attempt_at.filter(|_| d.status == PENDING);
    Ok(d)
}

/// An attempt with the delivery it belongs to.
#[derive(sqlx::FromRow)]
struct AttemptRow {
    delivery_id: String,
    #[sqlx(flatten)]
    attempt: AttemptRecord,
}

/// A request that carried several messages, as an attempt of each.
#[derive(sqlx::FromRow)]
struct BatchRow {
    #[sqlx(rename = "batch_id")]
    id: String,
    #[sqlx(flatten)]
    attempt: AttemptRecord,
}

impl DeliveryQueue {
    /// One page of an endpoint's deliveries, newest first, each with its attempts; with
    /// `batch_id`, the messages one request carried.
    pub async fn list(
        &self,
        webhook_id: &WebhookId,
        status: Option<&str>,
        batch_id: Option<&str>,
        page: i64,
        per_page: i64,
    ) -> Result<(Vec<DeliveryRecord>, i64), StoreError> {
        let filter = "webhook_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR \
             last_batch_id = $3 OR \
             delivery_id IN (SELECT delivery_id FROM delivery_attempts WHERE batch_id = $3))";
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM deliveries WHERE {filter}"))
                .bind(webhook_id.as_str())
                .bind(status)
                .bind(batch_id)
                .fetch_one(self.db.reader())
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM deliveries WHERE {filter} \
             ORDER BY created_at DESC, delivery_id DESC LIMIT $4 OFFSET $5"
        ))
        .bind(webhook_id.as_str())
        .bind(status)
        .bind(batch_id)
        .bind(per_page)
        .bind((page - 1).saturating_mul(per_page))
        .fetch_all(self.db.reader())
        .await?;
        let mut out = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        self.attach_attempts(&mut out).await?;
        Ok((out, total))
    }

    pub async fn get(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {RECORD_COLUMNS} FROM deliveries WHERE webhook_id = $1 AND delivery_id = $2"
        ))
        .bind(webhook_id.as_str())
        .bind(delivery_id)
        .fetch_optional(self.db.reader())
        .await?;
        let mut out: Vec<_> = row.as_ref().map(record).transpose()?.into_iter().collect();
        self.attach_attempts(&mut out).await?;
        Ok(out.pop())
    }

    /// Every attempt of the records, in one statement per 50 records.
    async fn attach_attempts(&self, records: &mut [DeliveryRecord]) -> Result<(), StoreError> {
        let mut by_id: HashMap<String, Vec<AttemptRecord>> = HashMap::new();
        for chunk in records.chunks(50) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT delivery_id, attempt, started_at, duration_ms, status_code, error, response, \
                 batch_id, batch_size FROM delivery_attempts WHERE delivery_id IN ({}) ORDER BY delivery_id, attempt",
                list.join(", ")
            );
            let mut q = sqlx::query_as::<_, AttemptRow>(&sql);
            for r in chunk {
                q = q.bind(&r.delivery_id);
            }
            for a in q.fetch_all(self.db.reader()).await? {
                by_id.entry(a.delivery_id).or_default().push(a.attempt);
            }
        }
        let batch_ids: Vec<&str> = records
            .iter()
            .filter_map(|r| r.last_batch_id.as_deref())
            .collect();
        let mut batches: HashMap<String, AttemptRecord> = HashMap::new();
        for chunk in batch_ids.chunks(50) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT batch_id, 0 AS attempt, started_at, duration_ms, status_code, error, \
                 response, batch_id, size AS batch_size FROM delivery_batches \
                 WHERE batch_id IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query_as::<_, BatchRow>(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for b in q.fetch_all(self.db.reader()).await? {
                batches.insert(b.id, b.attempt);
            }
        }
        for r in records {
            r.attempt_log = by_id.remove(&r.delivery_id).unwrap_or_default();
            // The batch that delivered it is its last attempt.
            if let Some(b) = r.last_batch_id.as_ref().and_then(|id| batches.get(id)) {
                r.attempt_log.push(AttemptRecord {
                    attempt: r.attempts,
                    ..b.clone()
                });
            }
        }
        Ok(())
    }
}
