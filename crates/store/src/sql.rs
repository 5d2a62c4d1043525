//! SQL text shared by both dialects: numbered placeholders, multi-row statement sizes, and
//! writes prepared to be sent several in one round trip.

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

/// `rows` tuples of `width` anonymous `?` placeholders, for SQLite statements of many values:
/// sqlx binds numbered ones by looking each name up among all of them, in time that grows with
/// the square of their number.
pub fn anonymous_rows(rows: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(", "));
    vec![row; rows].join(", ")
}

/// Values in one statement or call at most: under SQLite's highest placeholder number (32,766).
pub const BULK_VALUES: usize = 30_000;

/// Rows per multi-row statement. Measured: SQLite is fastest at 20 to 50 (sqlx binds SQLite
/// parameters in time that grows with the statement), PostgreSQL keeps gaining up to about 500.
pub fn chunk_rows(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 50,
        Backend::Postgres => 500,
    }
}

/// A WHERE clause built condition by condition, its text values bound as `$n` in the order they
/// were added, numbered after the statement's own parameters. Every filtered query (lists of
/// the read models, the audit trail, the event feed) builds its conditions with it.
#[derive(Debug)]
pub struct Filter {
    clauses: Vec<String>,
    binds: Vec<String>,
    first: usize,
}

impl Filter {
    /// A filter whose first value is `$first`.
    pub fn numbered_from(first: usize) -> Self {
        Filter {
            clauses: vec![],
            binds: vec![],
            first,
        }
    }

    /// A filter on `column = value`, the value as `$1`.
    pub fn by(column: &str, value: &str) -> Self {
        let mut f = Filter::numbered_from(1);
        f.eq(column, Some(value));
        f
    }

    /// Bind `value`; answers its placeholder.
    pub fn bind(&mut self, value: impl Into<String>) -> String {
        self.binds.push(value.into());
        format!("${}", self.first + self.binds.len() - 1)
    }

    /// A condition as written.
    pub fn push(&mut self, clause: impl Into<String>) {
        self.clauses.push(clause.into());
    }

    /// `column = value`, when there is a value.
    pub fn eq(&mut self, column: &str, value: Option<&str>) {
        if let Some(v) = value {
            let p = self.bind(v);
            self.push(format!("{column} = {p}"));
        }
    }

    /// `column IN (values)`, when there are values.
    pub fn any(&mut self, column: &str, values: &[String]) {
        if !values.is_empty() {
            let list: Vec<String> = values.iter().map(|v| self.bind(v.as_str())).collect();
            self.push(format!("{column} IN ({})", list.join(", ")));
        }
    }

    /// `column op value` of an integer (epoch microseconds, positions), when there is one.
    pub fn compare(&mut self, column: &str, op: &str, value: Option<i64>) {
        if let Some(v) = value {
            let p = self.bind(v.to_string());
            self.push(format!("{column} {op} CAST({p} AS BIGINT)"));
        }
    }

    /// The conditions joined by AND.
    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            return "1 = 1".into();
        }
        self.clauses.join(" AND ")
    }

    pub fn binds(&self) -> &[String] {
        &self.binds
    }

    /// The placeholder number after the last value.
    pub fn next(&self) -> usize {
        self.first + self.binds.len()
    }
}

/// A value of a [`Write`].
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Text(String),
    Int(i64),
    OptInt(Option<i64>),
    OptText(Option<String>),
    OptFloat(Option<f64>),
}

/// A statement not yet run, its placeholders numbered from `$1`, so that several can be sent
/// in one round trip (read-model writes with an append's events, a batch of delivery outcomes).
#[derive(Clone, Debug)]
pub struct Write {
    pub table: &'static str,
    pub sql: String,
    pub values: Vec<Val>,
}

impl Write {
    pub(crate) fn bind<'q>(&'q self, mut q: Query<'q>) -> Query<'q> {
        for v in &self.values {
            q = match v {
                Val::Text(s) => q.bind(s.as_str()),
                Val::Int(i) => q.bind(*i),
                Val::OptInt(i) => q.bind(*i),
                Val::OptText(s) => q.bind(s.as_deref()),
                Val::OptFloat(f) => q.bind(*f),
            };
        }
        q
    }

    /// The statement with its placeholders moved up by `by`, to follow another's `by` values.
    pub(crate) fn sql_after(&self, by: usize) -> String {
        let mut out = String::with_capacity(self.sql.len() + 16);
        let mut rest = self.sql.as_str();
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..=at]);
            rest = &rest[at + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if let Ok(n) = rest[..digits].parse::<usize>() {
                out.push_str(&(n + by).to_string());
                rest = &rest[digits..];
            }
        }
        out.push_str(rest);
        out
    }

    pub async fn run(&self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        self.bind(sqlx::query(&self.sql)).execute(conn).await?;
        Ok(())
    }
}

/// `writes` sent as one (see [`fuse_sql`]); placeholders follow on from one write to the next:
/// bind the writes in order.
pub(crate) fn fuse(backend: Backend, writes: &[Write]) -> String {
    let mut at = 0;
    let parts = writes
        .iter()
        .map(|w| {
            let sql = w.sql_after(at);
            at += w.values.len();
            sql
        })
        .collect();
    fuse_sql(backend, parts)
}

/// Statements sent as one: on PostgreSQL one statement, the last its main statement (whose rows
/// come back) and the others its CTEs, so no row may be changed by two of them; on SQLite,
/// which cannot modify data in a CTE, statements of one call.
pub(crate) fn fuse_sql(backend: Backend, mut parts: Vec<String>) -> String {
    match backend {
        Backend::Postgres => {
            let main = parts.pop().unwrap_or_default();
            if parts.is_empty() {
                return main;
            }
            let ctes: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(k, sql)| format!("w{k} AS ({sql})"))
                .collect();
            format!("WITH {} {main}", ctes.join(", "))
        }
        Backend::Sqlite => parts.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_move_up_and_nothing_else_changes() {
        let w = Write {
            table: "t",
            sql: "INSERT INTO t (a, b) VALUES ($1, $2), ($3, 'x$') ON CONFLICT (a) DO NOTHING"
                .into(),
            values: vec![],
        };
        assert_eq!(
            w.sql_after(40),
            "INSERT INTO t (a, b) VALUES ($41, $42), ($43, 'x$') ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(w.sql_after(0), w.sql);
    }

    #[test]
    fn fused_writes_number_their_values_in_order() {
        let w = |sql: &str, n: usize| Write {
            table: "t",
            sql: sql.into(),
            values: vec![Val::Int(0); n],
        };
        let writes = [
            w("INSERT INTO a VALUES ($1, $2)", 2),
            w("DELETE FROM b WHERE id = $1", 1),
            w("UPDATE c SET x = $1", 1),
        ];
        assert_eq!(
            fuse(Backend::Postgres, &writes),
            "WITH w0 AS (INSERT INTO a VALUES ($1, $2)), w1 AS (DELETE FROM b WHERE id = $3) \
             UPDATE c SET x = $4"
        );
        assert_eq!(
            fuse(Backend::Sqlite, &writes),
            "INSERT INTO a VALUES ($1, $2); DELETE FROM b WHERE id = $3; UPDATE c SET x = $4"
        );
    }

    #[test]
    fn a_filter_numbers_its_values_after_the_statements_own() {
        let mut f = Filter::numbered_from(4);
        f.eq("stream_id", Some("s"));
        f.eq("actor_id", None);
        f.any("event_type", &["a".into(), "b".into()]);
        f.compare("position", "<=", Some(7));
        assert_eq!(
            f.sql(),
            "stream_id = $4 AND event_type IN ($5, $6) AND position <= CAST($7 AS BIGINT)"
        );
        assert_eq!(f.binds(), ["s", "a", "b", "7"]);
        assert_eq!(f.next(), 8);
        assert_eq!(Filter::numbered_from(1).sql(), "1 = 1");
    }
}
