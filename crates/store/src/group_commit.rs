//! Group commit. Appends of one organization are serialized on its chain head, so one busy
//! organization would commit one append at a time. Instead, the appends that arrive while one of
//! its transactions is in flight wait in this process's queue, and the next transaction commits
//! them together: one lock, one opening, one write of everything, one COMMIT, each append keeping
//! its own checks. An append whose check fails is answered with its own conflict and the others
//! commit; every caller is answered only once its transaction has committed. Across processes
//! each batches its own appends and the organization's lock orders the batches.

use crate::error::{AppendError, StoreError};
use crate::log::{AppendRequest, EventLog, POSITIONS_PER_TX};
use easm_events::RecordedEvent;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Appends per transaction: the batch's opening reads every stream and reservation they name.
const MAX_BATCH: usize = 256;

type Answer = Result<Vec<RecordedEvent>, AppendError>;

struct Pending {
    req: AppendRequest,
    events: usize,
    answer: oneshot::Sender<Answer>,
}

/// The appends waiting per organization. An organization is present while a committer runs
/// for it: the append that finds it absent starts one.
#[derive(Default)]
pub(crate) struct Commits {
    queues: Mutex<HashMap<String, VecDeque<Pending>>>,
    appends: AtomicU64,
    transactions: AtomicU64,
}

/// Appends committed by this process and the transactions they took: how much group commit
/// gathers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitCounts {
    pub appends: u64,
    pub transactions: u64,
}

impl Commits {
    /// Queue `p`; true when no committer runs for its organization (the caller starts one).
    fn enqueue(&self, p: Pending) -> bool {
        let mut queues = self.queues.lock().expect("commit queues");
        let org = p.req.org_id.as_str();
        match queues.get_mut(org) {
            Some(queue) => {
                queue.push_back(p);
                false
            }
            None => {
                queues.insert(org.to_string(), VecDeque::from([p]));
                true
            }
        }
    }

    /// Whether appends of `org` wait; when none does, the organization's committer ends.
    fn waiting(&self, org: &str) -> bool {
        let mut queues = self.queues.lock().expect("commit queues");
        match queues.get(org) {
            Some(queue) if !queue.is_empty() => true,
            _ => {
                queues.remove(org);
                false
            }
        }
    }

    /// The next batch of `org`'s appends, as many as one transaction takes.
    fn next_batch(&self, org: &str) -> Vec<Pending> {
        let mut queues = self.queues.lock().expect("commit queues");
        let Some(queue) = queues.get_mut(org) else {
            return vec![];
        };
        let mut batch = Vec::new();
        let mut events = 0;
        while let Some(p) = queue.front() {
            if batch.len() == MAX_BATCH
                || (!batch.is_empty() && events + p.events >= POSITIONS_PER_TX as usize)
            {
                break;
            }
            events += p.events;
            batch.extend(queue.pop_front());
        }
        batch
    }

    /// The committer of `org` stopped without answering (it panicked): its queue goes, so that
    /// the waiting appends are answered with an error instead of waiting for ever.
    fn abandon(&self, org: &str) {
        if let Ok(mut queues) = self.queues.lock() {
            queues.remove(org);
        }
    }
}

/// Ends an organization's queue if its committer is dropped before it emptied it.
struct Committing<'a> {
    commits: &'a Commits,
    org: &'a str,
    done: bool,
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.commits.abandon(self.org);
        }
    }
}

impl EventLog {
    /// Append the events of `req` to its streams and its organization's chain, with its
    /// constraints checked, and answer them as recorded once they are durable. Concurrent
    /// appends of the organization are committed together (see the module's notes).
    pub async fn append(&self, req: AppendRequest) -> Result<Vec<RecordedEvent>, AppendError> {
        let events: usize = req.streams.iter().map(|s| s.events.len()).sum();
        if events as i64 >= POSITIONS_PER_TX {
            return Err(AppendError::TooLarge(events));
        }
        let org = req.org_id.as_str().to_string();
        let (answer, answered) = oneshot::channel();
        if self.commits.enqueue(Pending {
            req,
            events,
            answer,
        }) {
            let log = self.clone();
            tokio::spawn(async move { log.commit_queued(&org).await });
        }
        answered
            .await
            .map_err(|_| AppendError::Store(StoreError::CommitterLost))?
    }

    pub fn commit_counts(&self) -> CommitCounts {
        CommitCounts {
            appends: self.commits.appends.load(Ordering::Relaxed),
            transactions: self.commits.transactions.load(Ordering::Relaxed),
        }
    }

    /// Commit `org`'s queued appends, batch after batch, until none waits. The next batch's
    /// transaction is begun while the one before it commits: it waits for the organization's
    /// lock, and takes what has queued up meanwhile once it has it.
    async fn commit_queued(&self, org: &str) {
        let mut committing = Committing {
            commits: &self.commits,
            org,
            done: false,
        };
        while self.commits.waiting(org) {
            let tx = self.begin_locked(org).await;
            let batch = self.commits.next_batch(org);
            let log = self.clone();
            let org = org.to_string();
            tokio::spawn(async move {
                let answers = match tx {
                    Ok(tx) => log.commit_batch(tx, &org, &batch).await,
                    Err(e) => Err(e),
                };
                log.answer(&org, batch, answers).await;
            });
        }
        committing.done = true;
    }

    /// Answer each append of `batch` with its outcome. When the batch's transaction failed (an
    /// append whose read models cannot be folded, say), each is tried alone, so that it alone
    /// fails.
    async fn answer(
        &self,
        org: &str,
        batch: Vec<Pending>,
        answers: Result<Vec<Answer>, StoreError>,
    ) {
        match answers {
            Ok(answers) => {
                for (p, a) in batch.into_iter().zip(answers) {
                    let _ = p.answer.send(a);
                }
            }
            Err(_) if batch.len() > 1 => {
                for p in batch {
                    let alone = match self.begin_locked(org).await {
                        Ok(tx) => self.commit_batch(tx, org, std::slice::from_ref(&p)).await,
                        Err(e) => Err(e),
                    };
                    let answer = match alone {
                        Ok(mut answers) => answers.remove(0),
                        Err(e) => Err(e.into()),
                    };
                    let _ = p.answer.send(answer);
                }
            }
            Err(e) => {
                if let Some(p) = batch.into_iter().next() {
                    let _ = p.answer.send(Err(e.into()));
                }
            }
        }
    }

    /// `batch` in the transaction `tx`; each append's outcome, once the transaction committed.
    async fn commit_batch(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        org: &str,
        batch: &[Pending],
    ) -> Result<Vec<Answer>, StoreError> {
        let reqs: Vec<&AppendRequest> = batch.iter().map(|p| &p.req).collect();
        let answers = self.append_batch(&mut tx, org, &reqs).await?;
        let appended: usize = answers.iter().flatten().map(Vec::len).sum();
        let committed = answers.iter().filter(|a| a.is_ok()).count();
        if committed > 0 {
            tx.commit().await?;
            self.db.log_grew(appended as u64);
            self.commits
                .appends
                .fetch_add(committed as u64, Ordering::Relaxed);
            self.commits.transactions.fetch_add(1, Ordering::Relaxed);
        } else {
            tx.rollback().await?;
        }
        Ok(answers)
    }
}
