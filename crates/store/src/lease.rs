//! Time-limited leases in the database, so that exactly one of several processes runs a
//! singleton job and another takes over soon after the holder dies.

use crate::{db::Db, error::StoreError, now_micros};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Lease {
    db: Db,
    name: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    pub fn new(db: Db, name: impl Into<String>, holder: impl Into<String>, ttl: Duration) -> Self {
        Lease {
            db,
            name: name.into(),
            holder: holder.into(),
            ttl,
        }
    }

    /// Take the lease if it is free or expired, or extend it if we hold it. True while we hold it.
    pub async fn acquire(&self) -> Result<bool, StoreError> {
        let now = now_micros();
        let holder: Option<String> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4 \
             RETURNING holder",
        )
        .bind(&self.name)
        .bind(&self.holder)
        .bind(now + self.ttl.as_micros() as i64)
        .bind(now)
        .fetch_optional(self.db.writer())
        .await?;
        Ok(holder.as_deref() == Some(self.holder.as_str()))
    }

    /// `acquire` at most once a third of the lease's term: a singleton that works in rounds
    /// holds it without a statement per round. `renewed` is the caller's record of its last
    /// success (None after a refusal or an error, so the next call asks again).
    pub async fn keep(&self, renewed: &mut Option<Instant>) -> Result<bool, StoreError> {
        if renewed.is_some_and(|at| at.elapsed() <= self.ttl / 3) {
            return Ok(true);
        }
        *renewed = None;
        if self.acquire().await? {
            *renewed = Some(Instant::now());
        }
        Ok(renewed.is_some())
    }

    /// Give the lease up at once (a clean shutdown), so another process need not wait it out.
    pub async fn release(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(&self.name)
            .bind(&self.holder)
            .execute(self.db.writer())
            .await?;
        Ok(())
    }
}
