//! This process's committed events, handed to whatever drains the outbox here, so that an event
//! is fanned out from memory the moment it commits instead of being read back from the outbox.
//! The outbox stays the guarantee: an event the feed drops (it is full, or no drain takes from
//! it) leaves the outbox with the next read of it.

use easm_events::RecordedEvent;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{watch, Notify};

/// Events the feed holds before it drops new ones.
const CAPACITY: usize = 4_096;

#[derive(Default)]
pub struct CommitFeed {
    events: Mutex<VecDeque<RecordedEvent>>,
    /// Whether a drain takes events from the feed; until one does, only the wakes are given.
    taken: AtomicBool,
    /// Events were dropped since the last take.
    dropped: AtomicBool,
    arrived: Arc<Notify>,
    to_tell: Arc<Notify>,
    /// Counts this process's commits, for any number of watchers (live event streams).
    committed: watch::Sender<u64>,
}

impl CommitFeed {
    /// Called with the events of every commit of this process.
    pub(crate) fn push(&self, events: &[RecordedEvent]) {
        if self.taken.load(Ordering::Relaxed) {
            let mut held = self.events.lock().expect("commit feed");
            if held.len() + events.len() <= CAPACITY {
                held.extend(events.iter().cloned());
            } else {
                self.dropped.store(true, Ordering::Relaxed);
            }
        }
        self.arrived.notify_one();
        self.to_tell.notify_one();
        self.committed.send_modify(|n| *n += 1);
    }

    /// Changes with each commit of this process.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    /// Woken after each commit of this process: its outbox's drain.
    pub fn arrived(&self) -> &Arc<Notify> {
        &self.arrived
    }

    /// Woken after each commit of this process: what tells the other processes.
    pub fn to_tell(&self) -> &Arc<Notify> {
        &self.to_tell
    }

    /// Up to `max` events in commit order, and whether any were dropped since the last take
    /// (the outbox has them). The first take makes the feed keep events.
    pub fn take(&self, max: usize) -> (Vec<RecordedEvent>, bool) {
        self.taken.store(true, Ordering::Relaxed);
        let mut held = self.events.lock().expect("commit feed");
        let n = held.len().min(max);
        let events = held.drain(..n).collect();
        (events, self.dropped.swap(false, Ordering::Relaxed))
    }

    /// Forget what is held (the outbox has it): this process does not drain the outbox now.
    pub fn clear(&self) {
        self.events.lock().expect("commit feed").clear();
    }
}
