//! Where the two databases differ, one method of [`Backend`] each; the SQL itself is in
//! `postgres.rs` and `sqlite.rs`. Everything else in the store is one text for both.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use crate::db::Backend;

impl Backend {
    /// Rows per multi-row statement. Measured: SQLite is fastest at 20 to 50 (sqlx binds SQLite
    /// parameters in time that grows with the statement), PostgreSQL keeps gaining up to about 500.
    pub fn chunk_rows(self) -> usize {
        match self {
            Backend::Sqlite => sqlite::CHUNK_ROWS,
            Backend::Postgres => postgres::CHUNK_ROWS,
        }
    }

    /// A condition on `events.position` that keeps a reader below the point where events may
    /// still appear (none on SQLite, whose one writer commits in position order).
    pub(crate) fn horizon(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some(postgres::HORIZON),
        }
    }

    /// `position` among the rows `taken` selects (a subquery of positions).
    pub(crate) fn position_in(self, taken: &str) -> String {
        match self {
            Backend::Sqlite => sqlite::position_in(taken),
            Backend::Postgres => postgres::position_in(taken),
        }
    }

    /// The statement with which a transaction holds every append out until it ends (a rebuild).
    pub fn hold_appends(self) -> String {
        match self {
            Backend::Sqlite => sqlite::hold_appends(),
            Backend::Postgres => postgres::hold_appends(),
        }
    }

    /// Statements sent as one; the last one's rows come back.
    pub(crate) fn fuse(self, parts: Vec<String>) -> String {
        match self {
            Backend::Sqlite => sqlite::fuse(parts),
            Backend::Postgres => postgres::fuse(parts),
        }
    }

    /// Whether `column` is one of the strings of the JSON array bound at the placeholder `list`
    /// (a list of any length in one value).
    pub(crate) fn in_json_list(self, column: &str, list: &str) -> String {
        match self {
            Backend::Sqlite => sqlite::in_json_list(column, list),
            Backend::Postgres => postgres::in_json_list(column, list),
        }
    }

    /// Whether an event's stream is the resource whose id is the placeholder `id`.
    pub(crate) fn stream_of(self, id: &str) -> String {
        match self {
            Backend::Sqlite => sqlite::stream_of(id),
            Backend::Postgres => postgres::stream_of(id),
        }
    }

    /// Whether the placeholder `id` is a string anywhere in an event's data.
    pub(crate) fn names_in_data(self, id: &str) -> String {
        match self {
            Backend::Sqlite => sqlite::names_in_data(id),
            Backend::Postgres => postgres::names_in_data(id),
        }
    }
}
