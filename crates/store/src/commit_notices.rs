//! Commits told across processes. Only one process at a time drains the outbox (the fan-out or
//! the NATS relay, whichever holds its lease); a commit of another process would reach it at its
//! next idle look. On PostgreSQL each process that does not drain tells the others of its
//! commits with `NOTIFY` (after they committed, in a statement of its own: a `NOTIFY` inside the
//! append would serialize every commit of the cluster on PostgreSQL's notification lock) and
//! every process hears theirs with `LISTEN`. SQLite's processes share one file on one machine
//! and keep to their idle looks.

use crate::db::{Backend, Db};
use sqlx::postgres::PgListener;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const CHANNEL: &str = "easm_committed";

/// Until `stop`: tell the other processes of this process's commits (`local` is woken after
/// each) unless this process drains the outbox itself (`drains_here`), and wake `wake` when
/// another process tells of its own. `holder` names this process, so that it does not take its
/// own notices for another's.
pub async fn relay_commits(
    db: Db,
    holder: String,
    local: Arc<Notify>,
    drains_here: Arc<AtomicBool>,
    wake: Arc<Notify>,
    stop: impl Future<Output = ()>,
) {
    let Some(url) = db.url().filter(|_| db.backend() == Backend::Postgres) else {
        return stop.await;
    };
    let tell = async {
        loop {
            local.notified().await;
            if drains_here.load(Ordering::Relaxed) {
                continue;
            }
            // Commits made meanwhile are told by the next notice.
            let told = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&holder)
                .execute(db.writer())
                .await;
            if let Err(e) = told {
                tracing::debug!(error = %e, "could not tell other processes of a commit");
            }
        }
    };
    let hear = async {
        loop {
            if let Err(e) = listen(url, &holder, &wake).await {
                tracing::warn!(error = %e, "not hearing other processes' commits; listening again in 1 s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            // What was committed while nobody listened.
            wake.notify_one();
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = tell => {}
        _ = hear => {}
    }
}

async fn listen(url: &str, holder: &str, wake: &Notify) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    loop {
        match listener.try_recv().await? {
            Some(notice) if notice.payload() == holder => {}
            Some(_) => wake.notify_one(),
            // The connection was lost and is made again on the next call: notices sent
            // meanwhile are lost.
            None => wake.notify_one(),
        }
    }
}
