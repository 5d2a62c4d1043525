//! Read models folded from a sequence of events and written into empty tables: the rebuild, a
//! point-in-time snapshot of one organization, and the shadow copy that verification compares.

use crate::state::{tables, Origin, ReadState};
use easm_events::Event;
use easm_store::{
    index_shadow, swap_in, typed, AnyConnection, Backend, Db, ShadowFiller, StoreError,
};
use std::collections::BTreeMap;

/// Read models folded from a sequence of events and written into empty tables: the rebuild, a
/// point-in-time snapshot of one organization, and the shadow copy that verification compares.
#[derive(Default)]
pub struct Replay {
    state: ReadState,
    pub(crate) count: u64,
    /// Per organization, the last chain sequence folded.
    heads: BTreeMap<String, i64>,
}

impl Replay {
    pub fn apply(&mut self, r: &easm_events::RecordedEvent) -> Result<(), StoreError> {
        self.fold(r.chain_seq, r.into(), &typed(r)?);
        Ok(())
    }

    pub(crate) fn fold(&mut self, chain_seq: i64, origin: Origin<'_>, event: &Event) {
        self.state.fold(origin, event);
        self.count += 1;
        match self.heads.get_mut(origin.org_id.as_str()) {
            Some(seq) => *seq = chain_seq,
            None => {
                self.heads.insert(origin.org_id.to_string(), chain_seq);
            }
        }
    }

    /// Events applied so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Replace the read models of `target` (another database) with this state.
    pub async fn write(self, target: &Db) -> Result<u64, StoreError> {
        let count = self.count;
        let mut tx = target.writer().begin().await?;
        self.write_in(&mut tx, target, None).await?;
        tx.commit().await?;
        Ok(count)
    }

    /// On PostgreSQL through `filler` if the caller opened one.
    pub(crate) async fn write_in(
        self,
        conn: &mut AnyConnection,
        db: &Db,
        filler: Option<ShadowFiller>,
    ) -> Result<(), StoreError> {
        match db.backend() {
            // Shadow tables filled by COPY, indexed, then swapped in (see `easm_store::swap_in`).
            Backend::Postgres => {
                let mut filler = match filler {
                    Some(filler) => filler,
                    None => ShadowFiller::open(db, &tables()).await?,
                };
                for rows in self.state.rows() {
                    filler.fill(rows.table, &rows.columns, &rows.values).await?;
                }
                let mut shadows = vec![];
                for table in &tables() {
                    shadows.push(index_shadow(conn, table).await?);
                }
                swap_in(conn, &shadows).await?;
            }
            // SQLite deletes rows for good, so it refills the tables in place.
            Backend::Sqlite => {
                for table in &tables() {
                    sqlx::query(&format!("DELETE FROM {table}"))
                        .execute(&mut *conn)
                        .await?;
                }
                for rows in self.state.rows() {
                    for write in rows.sqlite_inserts() {
                        write.run(conn).await?;
                    }
                }
            }
        }
        // What the models now hold (a snapshot holds only some organizations).
        sqlx::query("UPDATE chain_heads SET projected_seq = 0")
            .execute(&mut *conn)
            .await?;
        for (org_id, seq) in &self.heads {
            sqlx::query("UPDATE chain_heads SET projected_seq = $1 WHERE org_id = $2")
                .bind(seq)
                .bind(org_id.as_str())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
