//! SQL text shared by both dialects: numbered placeholders, statements whose placeholders are
//! numbered only when sent, multi-row statement sizes, and writes prepared to be sent several in
//! one round trip.

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

/// A statement's text with its placeholders kept as indices of its values, numbered only when it
/// is sent: several statements then go as one, each numbered after the values of those before
/// it, without any text being read back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sql(Vec<Piece>);

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Text(String),
    /// The statement's value of this index (from 0).
    Value(usize),
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Sql {
        Sql(vec![Piece::Text(text.into())])
    }

    pub fn text(mut self, text: impl Into<String>) -> Sql {
        self.0.push(Piece::Text(text.into()));
        self
    }

    /// The placeholder of value `index`.
    pub fn value(mut self, index: usize) -> Sql {
        self.0.push(Piece::Value(index));
        self
    }

    /// Values `from .. from + n`, comma-separated.
    pub fn values(mut self, from: usize, n: usize) -> Sql {
        for i in 0..n {
            if i > 0 {
                self.0.push(Piece::Text(", ".into()));
            }
            self.0.push(Piece::Value(from + i));
        }
        self
    }

    /// `n` tuples of `width` values from `from`, each ending with `shared` (text and values
    /// common to every row, such as a timestamp).
    pub fn rows(mut self, n: usize, width: usize, from: usize, shared: &Sql) -> Sql {
        for r in 0..n {
            self.0
                .push(Piece::Text(if r == 0 { "(" } else { ", (" }.into()));
            self = self.values(from + r * width, width);
            self.0.extend(shared.0.iter().cloned());
            self.0.push(Piece::Text(")".into()));
        }
        self
    }

    /// The text with anonymous `?` placeholders, if each value appears once and in order:
    /// SQLite binds those without looking each number up among all the statement's (in time
    /// that grows with the square of their number: a quarter of a bulk import's time).
    pub fn render_positional(&self) -> Option<String> {
        let mut out = String::new();
        let mut next = 0;
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(i) if *i == next => {
                    out.push('?');
                    next += 1;
                }
                Piece::Value(_) => return None,
            }
        }
        Some(out)
    }

    /// The text, value `i` numbered `$(after + i + 1)`: after the `after` values of the
    /// statements sent before it.
    pub fn render(&self, after: usize) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(i) => {
                    out.push('$');
                    out.push_str(&(after + i + 1).to_string());
                }
            }
        }
        out
    }
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

/// A statement not yet run, so that several can be sent in one round trip (read-model writes
/// with an append's events, a batch of delivery outcomes).
#[derive(Clone, Debug)]
pub struct Write {
    pub table: &'static str,
    pub sql: Sql,
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

    pub async fn run(&self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        let sqlite = conn.backend_name() == "SQLite";
        let positional = sqlite.then(|| self.sql.render_positional()).flatten();
        let sql = positional.unwrap_or_else(|| self.sql.render(0));
        // Not kept prepared on PostgreSQL, for the NULLs of its values (see `insert_events`).
        self.bind(sqlx::query(&sql).persistent(sqlite))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// `writes` sent as one (see [`Backend::fuse`]); placeholders follow on from one write to the
/// next: bind the writes in order.
pub(crate) fn fuse(backend: Backend, writes: &[Write]) -> String {
    let mut at = 0;
    let parts = writes
        .iter()
        .map(|w| {
            let sql = w.sql.render(at);
            at += w.values.len();
            sql
        })
        .collect();
    backend.fuse(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_numbered_after_the_values_before_it() {
        let shared = Sql::new(", 'x$', ").value(0);
        let sql = Sql::new("INSERT INTO t (a, b, c) VALUES ")
            .rows(2, 2, 1, &shared)
            .text(" ON CONFLICT (a) DO NOTHING");
        assert_eq!(
            sql.render(0),
            "INSERT INTO t (a, b, c) VALUES ($2, $3, 'x$', $1), ($4, $5, 'x$', $1) \
             ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(
            sql.render(40),
            "INSERT INTO t (a, b, c) VALUES ($42, $43, 'x$', $41), ($44, $45, 'x$', $41) \
             ON CONFLICT (a) DO NOTHING"
        );
        assert_eq!(
            Sql::new("IN (").values(0, 3).text(")").render(2),
            "IN ($3, $4, $5)"
        );
    }

    #[test]
    fn fused_writes_number_their_values_in_order() {
        let w = |sql: Sql, n: usize| Write {
            table: "t",
            sql,
            values: vec![Val::Int(0); n],
        };
        let writes = [
            w(Sql::new("INSERT INTO a VALUES (").values(0, 2).text(")"), 2),
            w(Sql::new("DELETE FROM b WHERE id = ").value(0), 1),
            w(Sql::new("UPDATE c SET x = ").value(0), 1),
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
