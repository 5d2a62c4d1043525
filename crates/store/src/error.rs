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

/// Why the store cannot serve a request now, though nothing is wrong with the request: a retry
/// later can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    /// Lock time-outs and serialization failures: the store is working, but busy.
    Busy,
    /// The connection to the database was lost or could not be made (restart, network,
    /// connections terminated, too many clients).
    Disconnected,
    /// The database's disk is full: writes fail, reads go on.
    StorageFull,
}

impl StoreError {
    /// Lock time-outs and serialization failures that a retry can get past at once. (A lost
    /// connection is not retried here: whether a COMMIT that lost its connection took effect
    /// is unknown, so the caller is told and decides.)
    pub fn is_transient(&self) -> bool {
        self.unavailable() == Some(Unavailable::Busy)
    }

    /// Whether this is a passing state of the store rather than a fault of the request or a
    /// bug, and which.
    pub fn unavailable(&self) -> Option<Unavailable> {
        let StoreError::Database(e) = self else {
            return None;
        };
        match e {
            sqlx::Error::Database(e) => by_code(e.code().unwrap_or_default().as_ref()),
            sqlx::Error::PoolTimedOut => Some(Unavailable::Busy),
            sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                Some(Unavailable::Disconnected)
            }
            _ => None,
        }
    }
}

/// A database's error code (SQLite's result code as digits, PostgreSQL's SQLSTATE) read as a
/// passing state, if it is one.
fn by_code(code: &str) -> Option<Unavailable> {
    match code {
        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes; PostgreSQL's serialization
        // failure and deadlock.
        "5" | "6" | "517" | "261" | "40001" | "40P01" => Some(Unavailable::Busy),
        // SQLITE_FULL; PostgreSQL's disk_full.
        "13" | "53100" => Some(Unavailable::StorageFull),
        // PostgreSQL: too many connections, the server shutting down or starting
        // (admin_shutdown is what a terminated connection reports), connection exceptions.
        "53300" | "57P01" | "57P02" | "57P03" => Some(Unavailable::Disconnected),
        c if c.starts_with("08") => Some(Unavailable::Disconnected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_passing_states_or_not() {
        assert_eq!(by_code("517"), Some(Unavailable::Busy));
        assert_eq!(by_code("40001"), Some(Unavailable::Busy));
        assert_eq!(by_code("13"), Some(Unavailable::StorageFull));
        assert_eq!(by_code("53100"), Some(Unavailable::StorageFull));
        assert_eq!(by_code("57P01"), Some(Unavailable::Disconnected));
        assert_eq!(by_code("08006"), Some(Unavailable::Disconnected));
        // A unique violation or a syntax error is a bug or a conflict, never a retry.
        assert_eq!(by_code("23505"), None);
        assert_eq!(by_code("42601"), None);
        assert_eq!(by_code("19"), None);
    }

    #[test]
    fn a_lost_connection_is_unavailable_but_not_retried_blindly() {
        let lost = StoreError::Database(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(lost.unavailable(), Some(Unavailable::Disconnected));
        assert!(!lost.is_transient());
        let busy = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert!(busy.is_transient());
        assert_eq!(StoreError::CommitterLost.unavailable(), None);
    }
}
