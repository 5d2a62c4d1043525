//! What `/metrics` reads from the database at each scrape: the depths and lags of what every
//! process shares (the outbox, the delivery queue, the jobs), which no one process counts.

use crate::db::Db;
use crate::deliveries::PENDING;
use crate::{now_micros, StoreError};

pub struct Gauges {
    pub outbox_depth: i64,
    /// Seconds since the oldest event waiting in the outbox was committed (0 when none waits).
    pub outbox_oldest_seconds: f64,
    /// Events committed whose read models are not folded yet, over every organization.
    pub projection_lag: i64,
    /// Deliveries waiting for an attempt, and of them those due now.
    pub deliveries_pending: i64,
    pub deliveries_due: i64,
    pub endpoints_disabled: i64,
    /// Scan and discovery jobs by status.
    pub scan_jobs: Vec<(String, i64)>,
    pub discovery_jobs: Vec<(String, i64)>,
    /// Connections of this process's pools: in use, and open.
    pub pool_in_use: u32,
    pub pool_open: u32,
}

impl Gauges {
    pub async fn read(db: &Db) -> Result<Gauges, StoreError> {
        let r = db.reader();
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(r);
        let now = now_micros();
        let oldest: Option<i64> =
            sqlx::query_scalar("SELECT created_at FROM outbox ORDER BY position LIMIT 1")
                .fetch_optional(r)
                .await?;
        // One read of the pending index for both counts.
        let (pending, due): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN next_attempt_at <= $2 THEN 1 ELSE 0 END), 0) \
             AS BIGINT) FROM deliveries WHERE status = $1",
        )
        .bind(PENDING)
        .bind(now)
        .fetch_one(r)
        .await?;
        let by_status = |table: &'static str| async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT status, COUNT(*) FROM {table} GROUP BY status ORDER BY status"
            ))
            .fetch_all(r)
            .await?;
            Ok::<_, StoreError>(rows)
        };
        let pools = [db.reader(), db.writer()];
        let open: u32 = pools.iter().map(|p| p.size()).sum();
        let idle: usize = pools.iter().map(|p| p.num_idle()).sum();
        Ok(Gauges {
            outbox_depth: count("SELECT COUNT(*) FROM outbox").await?,
            outbox_oldest_seconds: oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1e6),
            projection_lag: count(
                "SELECT CAST(COALESCE(SUM(last_seq - projected_seq), 0) AS BIGINT) FROM chain_heads",
            )
            .await?,
            deliveries_pending: pending,
            deliveries_due: due,
            endpoints_disabled: count("SELECT COUNT(*) FROM rm_webhooks WHERE enabled = 0").await?,
            scan_jobs: by_status("rm_scan_jobs").await?,
            discovery_jobs: by_status("rm_discovery_jobs").await?,
            pool_in_use: open.saturating_sub(idle as u32),
            pool_open: open,
        })
    }
}
