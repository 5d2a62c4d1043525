//! Events whose messages went to the worker before their rows exist. From the outbox, messages
//! that travel in batches are sent first and written once, with their outcome (one row each
//! instead of a queued row and its update). Their event's outbox row stays until the last of them
//! is written, in that write's transaction, so a process that stops first fans the event out
//! again (at least once, with the same `webhook-id`s).

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Outstanding {
    held: Mutex<Held>,
    /// Woken when messages were written: fan-out may go on.
    freed: Notify,
}

#[derive(Default)]
struct Held {
    /// Messages not written yet, by their event's log position.
    by_position: HashMap<i64, usize>,
    messages: usize,
}

impl Outstanding {
    /// Messages held at most: past it, fan-out waits for batches to be answered rather than
    /// handing the worker messages it has no room to send.
    pub const LIMIT: usize = 16 * 1024;

    /// Hold one message per position given.
    pub fn hold(&self, positions: impl IntoIterator<Item = i64>) {
        let mut h = self.held.lock().expect("outstanding");
        for p in positions {
            *h.by_position.entry(p).or_default() += 1;
            h.messages += 1;
        }
    }

    /// Whether the event at `position` has messages not written yet (its outbox row is not for
    /// fan-out to take again).
    pub fn holds(&self, position: i64) -> bool {
        self.held
            .lock()
            .expect("outstanding")
            .by_position
            .contains_key(&position)
    }

    pub fn full(&self) -> bool {
        self.held.lock().expect("outstanding").messages >= Self::LIMIT
    }

    pub fn freed(&self) -> &Notify {
        &self.freed
    }

    /// The events whose last held messages are `written` (a position per message): their outbox
    /// rows go in the transaction that writes these messages. One writer at a time: it
    /// [`Self::release`]s them once that transaction committed.
    pub fn completed_by(&self, written: &[i64]) -> Vec<i64> {
        let h = self.held.lock().expect("outstanding");
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for p in written {
            *counts.entry(*p).or_default() += 1;
        }
        let mut done: Vec<i64> = counts
            .into_iter()
            .filter(|(p, n)| h.by_position.get(p).is_some_and(|held| held <= n))
            .map(|(p, _)| p)
            .collect();
        done.sort_unstable();
        done
    }

    /// `written` (a position per message) are written.
    pub fn release(&self, written: &[i64]) {
        if written.is_empty() {
            return;
        }
        let mut h = self.held.lock().expect("outstanding");
        for p in written {
            if let Some(n) = h.by_position.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    h.by_position.remove(p);
                }
                h.messages -= 1;
            }
        }
        drop(h);
        self.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_completes_with_its_last_written_message() {
        let o = Outstanding::default();
        o.hold([1, 1, 2]);
        assert_eq!(
            o.completed_by(&[1, 2]),
            vec![2],
            "event 1 has a message left"
        );
        o.release(&[1, 2]);
        assert!(o.holds(1));
        assert!(!o.holds(2));
        assert_eq!(o.completed_by(&[1]), vec![1]);
        o.release(&[1]);
        assert!(!o.holds(1));
    }

    #[test]
    fn nothing_completes_before_its_write_is_released() {
        let o = Outstanding::default();
        o.hold([5]);
        assert_eq!(o.completed_by(&[5]), vec![5]);
        // The transaction failed: the message is written again, and completes the event then.
        assert!(o.holds(5));
        assert_eq!(o.completed_by(&[5]), vec![5]);
    }

    #[test]
    fn fan_out_waits_while_too_many_messages_are_held() {
        let o = Outstanding::default();
        let positions: Vec<i64> = (0..Outstanding::LIMIT as i64).collect();
        o.hold(positions.iter().copied());
        assert!(o.full());
        o.release(&positions[..1]);
        assert!(!o.full());
    }
}
