//! How a read model is stored: its table, how a row becomes values and comes back from a row of
//! the database, and the generic loading and writing the projector and the rebuild use for
//! every model alike.

use crate::state::{Origin, RowMap};
use easm_events::Event;
use easm_store::{
    anonymous_rows, placeholders, AnyConnection, AnyRow, Row, Sql, StoreError, Val, Write,
    BULK_VALUES,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;

/// A read model's table: its key column and the others, in the order of a row's values.
pub(crate) struct Table {
    pub name: &'static str,
    pub pk: &'static str,
    pub columns: &'static [&'static str],
}

impl Table {
    /// The key and the other columns, comma-separated, in the order of a row's values.
    fn column_list(&self) -> String {
        format!("{}, {}", self.pk, self.columns.join(", "))
    }

    /// A JSON column of a row of this table; a value that does not decode is an error naming
    /// the row, never a silent default.
    pub fn json<T: DeserializeOwned>(
        &self,
        r: &AnyRow,
        column: &'static str,
    ) -> Result<T, StoreError> {
        let text: String = r.try_get(column)?;
        self.decode(r, column, &text)
    }

    /// [`Table::json`] of a nullable column.
    pub fn opt_json<T: DeserializeOwned>(
        &self,
        r: &AnyRow,
        column: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = r.try_get(column)?;
        text.map(|t| self.decode(r, column, &t)).transpose()
    }

    /// A column holding one of a fixed set of names; another value is an error naming the row.
    pub fn named<T>(
        &self,
        r: &AnyRow,
        column: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let text: String = r.try_get(column)?;
        parse(&text).ok_or_else(|| self.corrupt(r, column, format!("{text} is not a known value")))
    }

    /// [`Table::named`] of a nullable column.
    pub fn opt_named<T>(
        &self,
        r: &AnyRow,
        column: &'static str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        match r.try_get::<Option<String>, _>(column)? {
            None => Ok(None),
            Some(_) => self.named(r, column, parse).map(Some),
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        r: &AnyRow,
        column: &'static str,
        text: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(r, column, e.to_string()))
    }

    /// The error of a row of this table whose `column` cannot be read.
    fn corrupt(&self, r: &AnyRow, column: &'static str, reason: String) -> StoreError {
        StoreError::CorruptRow {
            table: self.name,
            key: r.try_get::<String, _>(self.pk).unwrap_or_default(),
            column,
            reason,
        }
    }
}

/// A list a read model's row holds (asset tags, a finding's scan jobs), kept one row per element
/// in a table of its own so the list is searched through an index, and replaced wholesale
/// whenever its row is written. The first column is the row's key.
pub(crate) struct ChildTable {
    pub name: &'static str,
    pub columns: &'static [&'static str],
}

/// A JSON column's text. The read models only store lists and maps of plain values, which
/// always serialize.
pub(crate) fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("read-model values always serialize")
}

/// One read model: its rows, which rows an event changes, how events change them, and how they
/// are stored. The projector folds typed events into every model; each looks at the events it
/// cares about.
pub(crate) trait ReadModel {
    type Row;
    const TABLE: Table;
    const CHILD: Option<ChildTable> = None;

    /// The key of the row `event` creates or changes, if it changes one of this model's.
    fn key(event: &Event) -> Option<&str>;

    /// Fold one event into the rows (loaded beforehand: every row `key` names, and what
    /// [`ReadModel::related`] adds).
    fn fold(rows: &mut RowMap<Self::Row>, origin: Origin<'_>, event: &Event);

    /// The row's values after its key, in the order of `TABLE.columns`.
    fn vals(row: &Self::Row) -> Vec<Val>;

    fn parse(r: &AnyRow) -> Result<Self::Row, StoreError>;

    /// Keys of further rows `events` change beyond those `key` names.
    async fn related(
        _conn: &mut AnyConnection,
        _events: &[Event],
    ) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }

    /// The rows of [`ReadModel::CHILD`] for the live rows, `columns` values each.
    fn child_values(_rows: &RowMap<Self::Row>) -> Vec<Val> {
        vec![]
    }
}

/// An id column, read as the id type it holds.
pub(crate) fn id<T: From<String>>(r: &AnyRow, column: &str) -> Result<T, StoreError> {
    Ok(T::from(r.try_get::<String, _>(column)?))
}

pub(crate) fn opt_id<T: From<String>>(r: &AnyRow, column: &str) -> Result<Option<T>, StoreError> {
    Ok(r.try_get::<Option<String>, _>(column)?.map(T::from))
}

/// Load the rows with the given keys into `into`.
pub(crate) async fn load<M: ReadModel>(
    conn: &mut AnyConnection,
    size: usize,
    keys: &BTreeSet<String>,
    into: &mut RowMap<M::Row>,
) -> Result<(), StoreError> {
    let table = &M::TABLE;
    let keys: Vec<&String> = keys.iter().collect();
    for chunk in keys.chunks(size) {
        let sql = format!(
            "SELECT {} FROM {} WHERE {} IN ({})",
            table.column_list(),
            table.name,
            table.pk,
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for key in chunk {
            q = q.bind(key.as_str());
        }
        for r in q.fetch_all(&mut *conn).await? {
            into.insert(r.try_get(table.pk)?, Some(M::parse(&r)?));
        }
    }
    Ok(())
}

/// Append the values of a row (its key, then its values) to `values`.
fn push_row<M: ReadModel>(values: &mut Vec<Val>, key: &str, row: &M::Row) {
    values.push(Val::Text(key.to_string()));
    values.extend(M::vals(row));
}

/// Upserts of the live rows and deletes of the dead ones, in multi-row statements.
pub(crate) fn writes<M: ReadModel>(
    size: usize,
    rows: &RowMap<M::Row>,
    stored: &BTreeSet<String>,
    out: &mut Vec<Write>,
) {
    let table = &M::TABLE;
    let (live, dead): (Vec<_>, Vec<_>) = rows.iter().partition(|(_, r)| r.is_some());
    for chunk in dead.chunks(size) {
        out.push(Write {
            table: table.name,
            sql: Sql::new(format!(
                "DELETE FROM {} WHERE {} IN (",
                table.name, table.pk
            ))
            .values(0, chunk.len())
            .text(")"),
            values: chunk
                .iter()
                .map(|(k, _)| Val::Text(k.to_string()))
                .collect(),
        });
    }
    let width = table.columns.len() + 1;
    let updates: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    for chunk in live.chunks(size) {
        let mut values = Vec::with_capacity(chunk.len() * width);
        for (key, row) in chunk {
            push_row::<M>(&mut values, key, row.as_ref().expect("live rows only"));
        }
        out.push(Write {
            table: table.name,
            sql: Sql::new(format!(
                "INSERT INTO {} ({}) VALUES ",
                table.name,
                table.column_list()
            ))
            .rows(chunk.len(), width, 0, &Sql::default())
            .text(format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                table.pk,
                updates.join(", ")
            )),
            values,
        });
    }
    if let Some(child) = &M::CHILD {
        replace_children(child, size, stored, M::child_values(rows), out);
    }
}

/// A child table's rows replaced for the rows written: the rows of the `stored` keys deleted,
/// then `values` inserted.
fn replace_children(
    child: &ChildTable,
    size: usize,
    stored: &BTreeSet<String>,
    values: Vec<Val>,
    out: &mut Vec<Write>,
) {
    let (table, columns) = (child.name, child.columns);
    let key = columns[0];
    let stored: Vec<&String> = stored.iter().collect();
    for chunk in stored.chunks(size) {
        out.push(Write {
            table,
            sql: Sql::new(format!("DELETE FROM {table} WHERE {key} IN ("))
                .values(0, chunk.len())
                .text(")"),
            values: chunk.iter().map(|k| Val::Text(k.to_string())).collect(),
        });
    }
    let width = columns.len();
    for chunk in values.chunks(size * width) {
        out.push(Write {
            table,
            sql: Sql::new(format!(
                "INSERT INTO {table} ({}) VALUES ",
                columns.join(", ")
            ))
            .rows(chunk.len() / width, width, 0, &Sql::default()),
            values: chunk.to_vec(),
        });
    }
}

/// The live rows of one table, for refilling it from empty.
pub(crate) struct Rows {
    pub table: &'static str,
    /// Comma-separated, in the order of the values.
    pub columns: String,
    pub values: Vec<Val>,
}

impl Rows {
    /// A model's own rows, then its child tables' rows.
    pub fn of<M: ReadModel>(rows: &RowMap<M::Row>) -> Vec<Rows> {
        let mut values = vec![];
        for (key, row) in rows {
            if let Some(row) = row {
                push_row::<M>(&mut values, key, row);
            }
        }
        let mut out = vec![Rows {
            table: M::TABLE.name,
            columns: M::TABLE.column_list(),
            values,
        }];
        if let Some(child) = &M::CHILD {
            out.push(Rows {
                table: child.name,
                columns: child.columns.join(", "),
                values: M::child_values(rows),
            });
        }
        out
    }

    /// Plain inserts of as many rows as SQLite takes in one statement.
    pub fn sqlite_inserts(&self) -> Vec<Write> {
        let width = self.columns.split(',').count();
        self.values
            .chunks(BULK_VALUES / width * width)
            .map(|chunk| Write {
                table: self.table,
                sql: Sql::new(format!(
                    "INSERT INTO {} ({}) VALUES {}",
                    self.table,
                    self.columns,
                    anonymous_rows(chunk.len() / width, width)
                )),
                values: chunk.to_vec(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::ReadModels;
    use easm_store::{Db, DbConfig, StoreError};

    #[tokio::test]
    async fn a_column_that_does_not_decode_is_an_error_naming_its_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("easm.db");
        let db = Db::connect(&DbConfig::Sqlite { path }).await.unwrap();
        sqlx::query(
            "INSERT INTO rm_assets (asset_id, org_id, group_id, value, asset_type, tags, \
             criticality, created_at, updated_at) \
             VALUES ('a1', 'o1', 'g1', 'x.example.com', 'domain', 'not json', 'medium', 0, 0)",
        )
        .execute(db.writer())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO rm_scan_jobs (scan_job_id, org_id, asset_id, profile, status, progress, \
             attempts, created_at, updated_at) \
             VALUES ('j1', 'o1', 'a1', 'quick', 'paused', 0, 0, 0, 0)",
        )
        .execute(db.writer())
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO rm_orgs (org_id, name, plan, created_at) VALUES ('o1', 'O', 'pro', 0); \
             INSERT INTO rm_api_keys (key_id, org_id, name, role, key_hash, prefix, created_at) \
             VALUES ('k1', 'o1', 'k', 'root', 'h1', 'ag_sk_x', 0)",
        )
        .execute(db.writer())
        .await
        .unwrap();
        let read = ReadModels::new(db);
        let err = read.key_by_hash("h1").await.unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::CorruptRow { table: "rm_api_keys", key, column: "role", .. } if key == "k1"
            ),
            "a key of an unknown role is never taken for another: {err}"
        );
        let err = read.asset(&"o1".into(), &"a1".into()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::CorruptRow { table: "rm_assets", key, column: "tags", .. } if key == "a1"
            ),
            "{err}"
        );
        let err = read.scan_job(&"o1".into(), &"j1".into()).await.unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::CorruptRow { table: "rm_scan_jobs", key, column: "status", .. } if key == "j1"
            ),
            "{err}"
        );
    }
}
