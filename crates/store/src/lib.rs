//! Storage for easm: the database connection for either backend, and the event log with its
//! optimistic concurrency, per-organization hash chain, transactional outbox, reservations and
//! gap-free ordered reads; and the webhook delivery queue.

mod append;
mod commit_notices;
mod db;
mod deliveries;
mod delivery_log;
mod dialect;
mod error;
mod gauges;
mod group_commit;
mod idempotency;
mod lease;
mod log;
mod log_replay;
mod open;
mod reservations;
mod secrets;
mod shadow;
mod signing;
mod sql;

pub use append::{BoxFuture, InlineProjection};
pub use commit_notices::relay_commits;
pub use db::{Backend, Db, DbConfig};
pub use deliveries::{
    Attempt, DeliveryQueue, DueDelivery, Finished, NewDelivery, NextStep, QueueClaim, Queuing,
    Unwritten, FAILED, ONE_ATTEMPT, PENDING, SUCCEEDED,
};
pub use delivery_log::{AttemptRecord, DeliveryRecord};
pub use error::{AppendError, StoreError, Unavailable};
pub use gauges::Gauges;
pub use group_commit::CommitCounts;
pub use idempotency::{Claim, IdempotencyStore};
pub use lease::Lease;
pub use log::{
    typed, AppendRequest, AuditFilter, Constraint, EventLog, FeedFilter, StreamAppend,
    POSITIONS_PER_TX,
};
pub use log_replay::{LogSource, ReplayEvent};
pub use secrets::{WebhookCredentials, WebhookSecrets};
pub use shadow::{index_shadow, shadow_of, swap_in, Shadow, ShadowFiller};
pub use signing::audit_signing_secret;
pub use sql::{anonymous_rows, placeholders, Filter, Sql, Val, Write, BULK_VALUES};
pub use sqlx::{any::AnyRow, AnyConnection, Row};

/// Epoch microseconds: the portable timestamp of every table.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
