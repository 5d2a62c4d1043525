//! Authenticated keys, kept in the process so that a request whose key was seen is answered
//! without reading the read models. Whatever changes who a key is (revoked, its member's role
//! changed, its member removed) empties the cache: at once in the process that appended it
//! ([`App::execute`](crate::App)), and in every other process when [`App::follow_key_changes`]
//! sees the event in the log, within [`FOLLOW_EVERY`] of it becoming readable.

use crate::{App, CommandError};
use easm_projections::read::KeyAuth;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The events after which no cached key can be trusted.
pub(crate) const KEY_EVENTS: &[&str] = &["api_key.revoked", "user.role_changed", "user.removed"];

/// How often a process looks for key changes made by the others.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(25);

/// Keys kept at most; past this many the cache starts over.
const MAX_KEYS: usize = 10_000;

/// Keys by the hash of their secret. A generation counts the clears, so that a key read before
/// a clear is not cached after it.
#[derive(Default)]
pub(crate) struct KeyCache {
    keys: Mutex<HashMap<String, KeyAuth>>,
    generation: AtomicU64,
}

impl KeyCache {
    fn get(&self, hash: &str) -> Option<KeyAuth> {
        self.keys.lock().expect("keys").get(hash).cloned()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keep `key` unless the cache was cleared since `generation` was read.
    fn keep(&self, generation: u64, hash: &str, key: KeyAuth) {
        let mut keys = self.keys.lock().expect("keys");
        if self.generation() != generation {
            return;
        }
        if keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.insert(hash.to_string(), key);
    }

    pub(crate) fn clear(&self) {
        let mut keys = self.keys.lock().expect("keys");
        self.generation.fetch_add(1, Ordering::SeqCst);
        keys.clear();
    }
}

impl App {
    /// The key whose secret hashes to `hash`, from the cache or the read models. Revoked keys
    /// are never kept: they are read again each time (and refused).
    pub async fn authenticate(&self, hash: &str) -> Result<Option<KeyAuth>, CommandError> {
        if let Some(key) = self.keys.get(hash) {
            return Ok(Some(key));
        }
        let generation = self.keys.generation();
        let found = self.read.key_by_hash(hash).await?;
        if let Some(key) = found.as_ref().filter(|k| !k.revoked) {
            self.keys.keep(generation, hash, key.clone());
        }
        Ok(found)
    }

    /// Empty the key cache whenever another process changes a key, until `stop`. A failed look
    /// empties it too: a process that cannot follow the log must not trust what it kept.
    pub async fn follow_key_changes(&self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut after = None;
        loop {
            let seen = match after {
                // Where the log stands now: nothing before it can be cached yet.
                None => self.log.readable_head().await.map(|head| (head, false)),
                Some(a) => self.log.seen_after(a, KEY_EVENTS).await,
            };
            match seen {
                Ok((upto, changed)) => {
                    if changed {
                        self.keys.clear();
                    }
                    after = Some(upto);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "key changes not followed; the key cache is emptied");
                    self.keys.clear();
                }
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easm_events::{Plan, Role};

    fn key(id: &str) -> KeyAuth {
        KeyAuth {
            key_id: id.into(),
            org_id: "o".into(),
            role: Role::Admin,
            plan: Plan::Free,
            prefix: "ag_sk_abc".into(),
            revoked: false,
            user_role: None,
            user_id: None,
            kind: easm_events::KeyKind::Rest,
            allow_writes: false,
        }
    }

    #[test]
    fn a_key_read_before_a_clear_is_not_kept_after_it() {
        let cache = KeyCache::default();
        let before = cache.generation();
        cache.keep(before, "h1", key("k1"));
        assert_eq!(cache.get("h1").map(|k| k.key_id), Some("k1".into()));
        let read_at = cache.generation();
        cache.clear();
        assert!(cache.get("h1").is_none());
        cache.keep(read_at, "h2", key("k2"));
        assert!(cache.get("h2").is_none(), "read before the clear: stale");
        cache.keep(cache.generation(), "h2", key("k2"));
        assert!(cache.get("h2").is_some());
    }
}
