//! The command side of easm. Every change goes through here, whoever asks for it: the API, the
//! CLI, the scanner's workers, the monitor scheduler and delivery. A command loads the aggregates
//! it needs, the pure domain decides which events follow, and the store appends them with the
//! versions the decision was based on and the reservations that hold invariants across streams
//! (`execute.rs`); the read models are folded in the same transaction, so the caller reads its
//! own write. Commands are grouped by the resource they change, one file each.

mod access;
mod alerts;
mod assets;
mod commit_feed;
mod credentials;
mod discovery;
mod error;
mod execute;
mod findings;
mod groups;
mod key_cache;
mod keys;
mod members;
mod monitors;
mod organizations;
mod risk;
mod scans;
pub mod streams;
mod timeline;
pub mod trace_context;
mod webhooks;

pub use alerts::AlertAction;
pub use commit_feed::CommitFeed;
pub use credentials::{hash_key, new_id, IssuedKey};
pub use discovery::{Promoted, DISCOVERED_GROUP};
pub use error::CommandError;
pub use findings::Imported;
pub use key_cache::FOLLOW_EVERY;
pub use keys::KeyOrder;
pub use monitors::MonitorRun;
pub use scans::ScanRequest;
pub use webhooks::SECRET_GRACE;

use easm_projections::{Projector, ReadModels};
use easm_store::{Db, EventLog, WebhookCredentials, WebhookSecrets};
use std::sync::Arc;

/// The command side over one store. Cheap to clone: every part is shared.
#[derive(Clone)]
pub struct App {
    log: EventLog,
    secrets: WebhookSecrets,
    credentials: WebhookCredentials,
    projector: Arc<Projector>,
    read: ReadModels,
    feed: Arc<CommitFeed>,
    groups: Arc<assets::GroupCache>,
    keys: Arc<key_cache::KeyCache>,
}

impl App {
    pub fn new(db: Db) -> Self {
        let projector = Arc::new(Projector::new(db.clone()));
        App {
            log: projector.log(),
            secrets: WebhookSecrets::new(db.clone()),
            credentials: WebhookCredentials::new(db.clone()),
            projector,
            read: ReadModels::new(db),
            feed: Arc::default(),
            groups: Arc::default(),
            keys: Arc::default(),
        }
    }

    /// The event log, with its read models folded into every append.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn read(&self) -> &ReadModels {
        &self.read
    }

    pub fn projector(&self) -> &Arc<Projector> {
        &self.projector
    }

    pub fn secrets(&self) -> &WebhookSecrets {
        &self.secrets
    }

    /// Endpoints' write-only values (header values, tokens, API keys, client keys).
    pub fn credentials(&self) -> &WebhookCredentials {
        &self.credentials
    }

    /// The events this process commits, as they commit.
    pub fn commit_feed(&self) -> &Arc<CommitFeed> {
        &self.feed
    }
}
