//! SQL text shared by both dialects: numbered placeholders and multi-row statement sizes.

use crate::db::Backend;

/// A statement with its values bound so far.
pub(crate) type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// `$start, $start+1, ...`: `n` numbered placeholders.
pub fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` tuples of `width` placeholders numbered from `$first`, each followed by `suffix`
/// (values shared by every row).
pub fn value_rows(rows: usize, width: usize, first: usize, suffix: &str) -> String {
    (0..rows)
        .map(|r| format!("({}{suffix})", placeholders(first + r * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows per multi-row statement. Measured: SQLite is fastest at 20 to 50 (sqlx binds SQLite
/// parameters in time that grows with the statement), PostgreSQL keeps gaining up to about 500.
pub fn chunk_rows(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 50,
        Backend::Postgres => 500,
    }
}
