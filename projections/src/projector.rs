use easm_events::{Event, RecordedEvent};
use easm_store::{typed, AnyConnection, Backend, Db, EventLog, StoreError};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

const CHECKPOINT: &str = "read_models";
const BATCH: i64 = 1000;
/// Tables a rebuild empties, children first.
const READ_MODEL_TABLES: &[&str] = &[
    "rm_asset_tags",
    "rm_assets",
    "rm_groups",
    "rm_api_keys",
    "rm_orgs",
];

/// Applies events to the read models. Each batch and its checkpoint commit in one transaction,
/// so a crash can neither skip nor double-apply an event; a database lock keeps several
/// processes from applying the same batch.
pub struct Projector {
    db: Db,
    running: Mutex<()>,
}

impl Projector {
    pub fn new(db: Db) -> Self {
        Projector {
            db,
            running: Mutex::new(()),
        }
    }

    /// Lock the checkpoint for this transaction. On SQLite the write comes first so the
    /// transaction holds the write lock before it reads.
    async fn lock(&self, conn: &mut AnyConnection) -> Result<i64, StoreError> {
        if self.db.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
                .bind(CHECKPOINT)
                .execute(&mut *conn)
                .await?;
        } else {
            sqlx::query("UPDATE projection_checkpoints SET position = position WHERE name = $1")
                .bind(CHECKPOINT)
                .execute(&mut *conn)
                .await?;
        }
        Ok(
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                .bind(CHECKPOINT)
                .fetch_one(&mut *conn)
                .await?,
        )
    }

    pub async fn checkpoint(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                .bind(CHECKPOINT)
                .fetch_one(self.db.reader())
                .await?,
        )
    }

    /// Apply every readable event after the checkpoint; returns the new checkpoint.
    pub async fn catch_up(&self) -> Result<i64, StoreError> {
        let _guard = self.running.lock().await;
        // Idle polls stay read-only: no write transaction unless there is something to apply.
        let checkpoint = self.checkpoint().await?;
        let pending: Option<i64> =
            sqlx::query_scalar("SELECT position FROM events WHERE position > $1 LIMIT 1")
                .bind(checkpoint)
                .fetch_optional(self.db.reader())
                .await?;
        if pending.is_none() {
            return Ok(checkpoint);
        }
        loop {
            let (position, applied) = self.apply_batch(false).await?;
            if applied < BATCH as usize {
                return Ok(position);
            }
        }
    }

    /// One transaction: lock, optionally empty the read models, apply up to a batch.
    async fn apply_batch(&self, reset: bool) -> Result<(i64, usize), StoreError> {
        let mut tx = self.db.writer().begin().await?;
        let mut position = self.lock(&mut tx).await?;
        if reset {
            for table in READ_MODEL_TABLES {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&mut *tx)
                    .await?;
            }
            position = 0;
        }
        let events = EventLog::read_after(self.db.backend(), &mut tx, position, BATCH).await?;
        for e in &events {
            apply(&mut tx, e).await?;
            position = e.position;
        }
        if reset || !events.is_empty() {
            sqlx::query("UPDATE projection_checkpoints SET position = $1 WHERE name = $2")
                .bind(position)
                .bind(CHECKPOINT)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((position, events.len()))
    }

    /// Read-your-writes: return once the read models include `position`. Bounded, because a
    /// long transaction elsewhere can hold the readable horizon back; the write itself has
    /// already committed either way.
    pub async fn wait_for(&self, position: i64) -> Result<(), StoreError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.catch_up().await? >= position || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Empty the read models and apply the whole log again. The first batch empties the tables
    /// in the same transaction that refills them, so readers see old or new, never nothing.
    pub async fn rebuild(&self) -> Result<u64, StoreError> {
        let _guard = self.running.lock().await;
        let (_, mut applied) = self.apply_batch(true).await?;
        let mut total = applied as u64;
        while applied == BATCH as usize {
            (_, applied) = self.apply_batch(false).await?;
            total += applied as u64;
        }
        Ok(total)
    }
}

fn ts(e: &RecordedEvent) -> i64 {
    e.occurred_at.timestamp_micros()
}

async fn apply(conn: &mut AnyConnection, e: &RecordedEvent) -> Result<(), StoreError> {
    let at = ts(e);
    match typed(e)? {
        Event::OrgCreated(o) => {
            sqlx::query(
                "INSERT INTO rm_orgs (org_id, name, plan, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id) DO NOTHING",
            )
            .bind(&o.org_id)
            .bind(&o.name)
            .bind(&o.plan)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Event::ApiKeyCreated(k) => {
            sqlx::query(
                "INSERT INTO rm_api_keys (key_id, org_id, name, role, key_hash, prefix, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_id) DO NOTHING",
            )
            .bind(&k.key_id)
            .bind(&e.org_id)
            .bind(&k.name)
            .bind(&k.role)
            .bind(&k.key_hash)
            .bind(&k.prefix)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Event::ApiKeyRevoked(k) => {
            sqlx::query("UPDATE rm_api_keys SET revoked_at = $1 WHERE key_id = $2")
                .bind(at)
                .bind(&k.key_id)
                .execute(&mut *conn)
                .await?;
        }
        Event::GroupCreated(g) => {
            sqlx::query(
                "INSERT INTO rm_groups (group_id, org_id, name, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4) ON CONFLICT (group_id) DO NOTHING",
            )
            .bind(&g.group_id)
            .bind(&e.org_id)
            .bind(&g.name)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        Event::GroupRenamed(g) => {
            sqlx::query("UPDATE rm_groups SET name = $1, updated_at = $2 WHERE group_id = $3")
                .bind(&g.name)
                .bind(at)
                .bind(&g.group_id)
                .execute(&mut *conn)
                .await?;
        }
        Event::GroupDeleted(g) => {
            sqlx::query("DELETE FROM rm_groups WHERE group_id = $1")
                .bind(&g.group_id)
                .execute(&mut *conn)
                .await?;
        }
        Event::AssetAdded(a) => {
            sqlx::query(
                "INSERT INTO rm_assets (asset_id, org_id, group_id, value, asset_type, tags, \
                 criticality, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (asset_id) DO NOTHING",
            )
            .bind(&a.asset_id)
            .bind(&e.org_id)
            .bind(&a.group_id)
            .bind(&a.value)
            .bind(&a.asset_type)
            .bind(serde_json::to_string(&a.tags).unwrap_or_default())
            .bind(&a.criticality)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            set_tags(conn, &a.asset_id, &e.org_id, &a.tags).await?;
        }
        Event::AssetUpdated(a) => {
            if let Some(g) = &a.group_id {
                update_asset(conn, "group_id", g, at, &a.asset_id).await?;
            }
            if let Some(c) = &a.criticality {
                update_asset(conn, "criticality", c, at, &a.asset_id).await?;
            }
            if let Some(tags) = &a.tags {
                let json = serde_json::to_string(tags).unwrap_or_default();
                update_asset(conn, "tags", &json, at, &a.asset_id).await?;
                set_tags(conn, &a.asset_id, &e.org_id, tags).await?;
            }
        }
        Event::AssetRemoved(a) => {
            for table in ["rm_asset_tags", "rm_assets"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE asset_id = $1"))
                    .bind(&a.asset_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

async fn update_asset(
    conn: &mut AnyConnection,
    column: &'static str,
    value: &str,
    at: i64,
    asset_id: &str,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "UPDATE rm_assets SET {column} = $1, updated_at = $2 WHERE asset_id = $3"
    ))
    .bind(value)
    .bind(at)
    .bind(asset_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn set_tags(
    conn: &mut AnyConnection,
    asset_id: &str,
    org_id: &str,
    tags: &[String],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM rm_asset_tags WHERE asset_id = $1")
        .bind(asset_id)
        .execute(&mut *conn)
        .await?;
    for t in tags {
        sqlx::query("INSERT INTO rm_asset_tags (asset_id, org_id, tag) VALUES ($1, $2, $3)")
            .bind(asset_id)
            .bind(org_id)
            .bind(t)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
