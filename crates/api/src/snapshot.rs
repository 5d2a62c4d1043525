//! Point-in-time snapshots: one organization's events up to a moment, replayed into a fresh
//! SQLite database that holds the read models as they were then. `easm replay` writes one to a
//! file; `asOf` queries keep the newest few.

use easm_events::{OrgId, RecordedEvent};
use easm_projections::{ReadModels, Replay};
use easm_store::{Db, DbConfig, EventLog, FeedFilter, StoreError};
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// Events a replay reads at a time; a shorter page is the last.
pub const PAGE: i64 = 5000;
const KEPT: usize = 16;

/// Where a replay stops: events that occurred before a time (epoch microseconds), or up to a
/// position (included).
#[derive(Clone, Copy, Debug)]
pub enum Until {
    Time(i64),
    Position(i64),
}

/// Replay `org_id`'s events up to `until` into a new SQLite file at `path` (replacing it);
/// `progress` hears the events applied and the total after each page.
pub async fn replay_org(
    log: &EventLog,
    org_id: &OrgId,
    until: Until,
    path: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<(Db, u64), StoreError> {
    let filter = match until {
        Until::Time(t) => FeedFilter {
            until: Some(t),
            ..FeedFilter::default()
        },
        Until::Position(p) => FeedFilter {
            until_position: Some(p),
            ..FeedFilter::default()
        },
    };
    let total = log.org_count(org_id, &filter).await? as u64;
    let filter = &filter;
    let pages = move |after| async move { log.org_after(org_id, after, PAGE, filter).await };
    replay_into(path, pages, |_| true, |n| progress(n, total)).await
}

/// A new SQLite database at `path` (replacing any there) holding the read models that the
/// events of `pages` fold to: `pages(after)` gives up to [`PAGE`] events after a position, and
/// a shorter page is the last. Events `keep` refuses are skipped. `progress` hears the events
/// applied after each page.
pub async fn replay_into<F, Fut>(
    path: &Path,
    mut pages: F,
    keep: impl Fn(&RecordedEvent) -> bool,
    mut progress: impl FnMut(u64),
) -> Result<(Db, u64), StoreError>
where
    F: FnMut(i64) -> Fut,
    Fut: Future<Output = Result<Vec<RecordedEvent>, StoreError>>,
{
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    let db = Db::connect(&DbConfig::Sqlite { path: path.into() }).await?;
    let mut replay = Replay::default();
    let mut after = 0;
    loop {
        let events = pages(after).await?;
        for e in &events {
            if keep(e) {
                replay.apply(e)?;
            }
            after = e.position;
        }
        progress(replay.count());
        if (events.len() as i64) < PAGE {
            break;
        }
    }
    let count = replay.write(&db).await?;
    Ok((db, count))
}

struct Kept {
    org_id: OrgId,
    at: i64,
    db: Db,
    path: PathBuf,
}

/// Snapshots for `asOf` queries, the newest 16. Only moments already past are reused (a later
/// commit could still land before a moment in the future).
#[derive(Default)]
pub struct Snapshots {
    kept: Mutex<VecDeque<Kept>>,
}

impl Snapshots {
    /// The read models of `org_id` as they were at `at` (epoch microseconds).
    pub async fn at(
        &self,
        log: &EventLog,
        org_id: &OrgId,
        at: i64,
    ) -> Result<ReadModels, StoreError> {
        let mut kept = self.kept.lock().await;
        if let Some(k) = kept.iter().find(|k| k.org_id == *org_id && k.at == at) {
            return Ok(ReadModels::new(k.db.clone()));
        }
        let dir = std::env::temp_dir().join(format!("easm-snapshots-{}", std::process::id()));
        let path = dir.join(format!("{}.db", uuid::Uuid::new_v4()));
        let (db, _) = replay_org(log, org_id, Until::Time(at), &path, |_, _| {}).await?;
        // Unsettled ones are kept only to be closed and removed in turn, never reused.
        let settled = at < easm_store::now_micros() - 5_000_000;
        kept.push_back(Kept {
            org_id: org_id.clone(),
            at: if settled { at } else { i64::MIN },
            db: db.clone(),
            path,
        });
        if kept.len() > KEPT {
            if let Some(old) = kept.pop_front() {
                old.db.close().await;
                let _ = std::fs::remove_file(old.path);
            }
        }
        Ok(ReadModels::new(db))
    }
}
