#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored event {position} cannot be read: {reason}")]
    Corrupt { position: i64, reason: String },
    /// A read-model row whose stored value does not decode (a JSON column, say).
    #[error("{table} row {key}: {column} cannot be read: {reason}")]
    CorruptRow {
        table: &'static str,
        key: String,
        column: &'static str,
        reason: String,
    },
    #[error("unexpected schema: {0}")]
    Schema(String),
    /// The task committing this append stopped before answering.
    #[error("the append's committer stopped before answering")]
    CommitterLost,
}

/// Why an append did not commit. `Conflict` and `Constraint` mean the decision was taken on state
/// that changed meanwhile: the command handler re-loads and decides again.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} is at version {actual}, expected {expected}")]
    Conflict {
        stream_id: String,
        expected: i64,
        actual: i64,
    },
    #[error("constraint no longer holds: {0}")]
    Constraint(String),
    #[error("too many events in one append ({0})")]
    TooLarge(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AppendError {
    fn from(e: sqlx::Error) -> Self {
        AppendError::Store(StoreError::Database(e))
    }
}

impl StoreError {
    /// Lock time-outs and serialization failures that a retry can get past.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default();
                // SQLITE_BUSY / SQLITE_LOCKED (and extended codes), PG serialization/deadlock.
                matches!(code.as_ref(), "5" | "6" | "517" | "261" | "40001" | "40P01")
            }
            StoreError::Database(sqlx::Error::PoolTimedOut) => true,
            _ => false,
        }
    }
}
