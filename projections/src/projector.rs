//! The projector: folds each append's events into the read models on the append's own
//! transaction (`InlineProjection`), and rebuilds them all from the log. Each organization's
//! chain head records how far its read models go, so a crash can neither skip nor double-apply
//! an event.

use crate::models::finding_totals::Change;
use crate::replay::Replay;
use crate::state::{tables, ReadState, Touched};
use easm_events::{Event, RecordedEvent};
use easm_store::{
    AnyConnection, Backend, BoxFuture, Db, EventLog, InlineProjection, LogSource, ReplayEvent,
    ShadowFiller, StoreError, Write,
};
use std::sync::Arc;

pub struct Projector {
    db: Db,
}

impl Projector {
    pub fn new(db: Db) -> Self {
        Projector { db }
    }

    /// A log whose appends keep these read models in step.
    pub fn log(self: &Arc<Self>) -> EventLog {
        EventLog::with_projection(self.db.clone(), self.clone())
    }

    /// Fold events appended without read models (by tools) into them; cheap when there are none.
    pub async fn catch_up(self: &Arc<Self>) -> Result<usize, StoreError> {
        self.log().project_lagging().await
    }

    /// Load the rows the events touch on the append's connection, fold, and answer the writes
    /// that store them.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        recorded: &[RecordedEvent],
        events: &[Event],
    ) -> Result<Vec<Write>, StoreError> {
        let touched = Touched::by(conn, recorded, events).await?;
        let size = self.db.backend().chunk_rows();
        let mut state = ReadState::load(conn, size, &touched).await?;
        let (findings, assets) = (state.findings.clone(), state.assets.clone());
        for (r, e) in recorded.iter().zip(events) {
            state.fold(r.into(), e);
        }
        let mut writes = state.writes(size, &touched);
        let change = Change::of((&findings, &state.findings), (&assets, &state.assets));
        change.writes(size, &mut writes);
        Ok(writes)
    }

    /// Empty the read models and fold the whole log into them again, in one transaction: readers
    /// see the old models until the new ones commit, appends wait for it. Returns the number of
    /// events replayed.
    pub async fn rebuild(&self) -> Result<u64, StoreError> {
        let mut tx = self.db.writer().begin().await?;
        // The log stands still, and no append waits on a row here.
        sqlx::query(&self.db.backend().hold_appends())
            .execute(&mut *tx)
            .await?;
        let mut replay = Replay::default();
        let fold = |r: ReplayEvent| {
            replay.fold(r.chain_seq, (&r).into(), &r.event);
            Ok(())
        };
        // PostgreSQL reads the log and fills the new tables on a connection of its own.
        let mut filler = match self.db.backend() {
            Backend::Postgres => Some(ShadowFiller::open(&self.db, &tables()).await?),
            Backend::Sqlite => None,
        };
        let source = match &mut filler {
            Some(filler) => LogSource::Postgres(filler.connection()),
            None => LogSource::Sqlite(&mut tx),
        };
        EventLog::each_event(source, fold).await?;
        let count = replay.count;
        replay.write_in(&mut tx, &self.db, filler).await?;
        tx.commit().await?;
        Ok(count)
    }
}

impl InlineProjection for Projector {
    fn project<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        recorded: &'a [RecordedEvent],
        events: &'a [Event],
    ) -> BoxFuture<'a, Result<Vec<Write>, StoreError>> {
        Box::pin(self.apply(conn, recorded, events))
    }
}
