//! The read models as plain rows, and the pure fold of events into them. The projector loads the
//! rows a batch of events touches, folds, and writes back what changed; a rebuild folds the whole
//! log from empty and bulk-inserts the result. One fold serves both, so they cannot disagree.
//! Each read model lives in `models/`; the list below is the one place that names them all.

use crate::models::{
    alerts::Alerts,
    assets::Assets,
    discovery::{DiscoveredNames, DiscoveryJobs},
    finding_totals::{Tally, TOTALS},
    findings::Findings,
    groups::Groups,
    keys::Keys,
    monitors::Monitors,
    orgs::Orgs,
    scan_jobs::ScanJobs,
    users::Users,
    webhooks::Webhooks,
};
use crate::table::{load, writes, ReadModel, Rows};
use easm_events::{Event, OrgId, RecordedEvent};
use easm_store::{AnyConnection, ReplayEvent, StoreError, Write};
use std::collections::{BTreeMap, BTreeSet};

/// Rows by key. `None` marks a row that a fold deleted, so the writer removes it.
pub type RowMap<T> = BTreeMap<String, Option<T>>;

/// What folding takes from an event's envelope: whose it is, when (epoch microseconds) and by
/// whom; read in full from the log when appending, narrowly by a rebuild.
#[derive(Clone, Copy)]
pub struct Origin<'a> {
    pub org_id: &'a OrgId,
    pub at: i64,
    pub actor_id: &'a str,
}

impl<'a> From<&'a RecordedEvent> for Origin<'a> {
    fn from(r: &'a RecordedEvent) -> Self {
        Origin {
            org_id: &r.org_id,
            at: r.occurred_at.timestamp_micros(),
            actor_id: &r.actor.id,
        }
    }
}

impl<'a> From<&'a ReplayEvent> for Origin<'a> {
    fn from(r: &'a ReplayEvent) -> Self {
        Origin {
            org_id: &r.org_id,
            at: r.occurred_at,
            actor_id: &r.actor_id,
        }
    }
}

/// Insert unless a row (live or deleted) is already known: replaying a creation changes nothing.
pub(crate) fn create<T>(rows: &mut RowMap<T>, key: impl AsRef<str>, row: impl FnOnce() -> T) {
    rows.entry(key.as_ref().to_string())
        .or_insert_with(|| Some(row()));
}

/// The live row of `key`, to change.
pub(crate) fn live<T>(rows: &mut RowMap<T>, key: impl AsRef<str>) -> Option<&mut T> {
    rows.get_mut(key.as_ref()).and_then(Option::as_mut)
}

/// Declares every read model once: the state holding their rows, the keys a batch of events
/// changes, and folding, loading and writing all of them.
macro_rules! read_models {
    ($($field:ident: $model:ty),* $(,)?) => {
        /// Rows by key, per read model.
        #[derive(Debug, Default)]
        pub struct ReadState {
            $(pub $field: RowMap<<$model as ReadModel>::Row>,)*
        }

        /// The keys of the stored rows a batch of events changes, per read model.
        #[derive(Default)]
        pub(crate) struct Touched {
            $(pub $field: BTreeSet<String>,)*
        }

        impl ReadState {
            /// Every read model sees every event; each changes what it keeps of it.
            pub fn fold(&mut self, origin: Origin<'_>, event: &Event) {
                $(<$model>::fold(&mut self.$field, origin, event);)*
            }

            /// The stored rows `touched` names.
            pub(crate) async fn load(
                conn: &mut AnyConnection,
                size: usize,
                touched: &Touched,
            ) -> Result<ReadState, StoreError> {
                let mut state = ReadState::default();
                $(load::<$model>(conn, size, &touched.$field, &mut state.$field).await?;)*
                Ok(state)
            }

            /// The writes that store this state over `stored` (the rows loaded).
            pub(crate) fn writes(&self, size: usize, stored: &Touched) -> Vec<Write> {
                let mut out = vec![];
                $(writes::<$model>(size, &self.$field, &stored.$field, &mut out);)*
                out
            }

            /// Every live row, table by table, and the finding totals they make.
            pub(crate) fn rows(&self) -> Vec<Rows> {
                let mut out = vec![];
                $(out.extend(Rows::of::<$model>(&self.$field));)*
                out.push(Tally::of(&self.findings, &self.assets).rows());
                out
            }
        }

        impl Touched {
            /// The stored rows `recorded` (with their typed `events`) change. Rows opened by the
            /// first event of their own stream cannot exist yet, so they are not loaded.
            pub(crate) async fn by(
                conn: &mut AnyConnection,
                recorded: &[RecordedEvent],
                events: &[Event],
            ) -> Result<Touched, StoreError> {
                let mut touched = Touched::default();
                let mut new: BTreeSet<&str> = BTreeSet::new();
                for (r, e) in recorded.iter().zip(events) {
                    $(
                        if let Some(key) = <$model>::key(e) {
                            if !new.contains(key) && !touched.$field.contains(key) {
                                if r.stream_version == 1 && r.stream_id.ends_with(key) {
                                    new.insert(key);
                                } else {
                                    touched.$field.insert(key.to_string());
                                }
                            }
                        }
                    )*
                }
                $(touched.$field.extend(<$model>::related(conn, events).await?);)*
                Ok(touched)
            }
        }

        /// Every read model's tables, its own and its child tables, and the finding totals:
        /// what a rebuild refills.
        pub(crate) fn tables() -> Vec<&'static str> {
            let mut out = vec![];
            $(
                out.push(<$model>::TABLE.name);
                out.extend(<$model>::CHILD.map(|c| c.name));
            )*
            out.push(TOTALS);
            out
        }
    };
}

read_models! {
    orgs: Orgs,
    keys: Keys,
    users: Users,
    groups: Groups,
    assets: Assets,
    webhooks: Webhooks,
    scan_jobs: ScanJobs,
    findings: Findings,
    monitors: Monitors,
    alerts: Alerts,
    discovery_jobs: DiscoveryJobs,
    discovered_names: DiscoveredNames,
}

/// Read-model tests read as behaviour: given these events (at these times), then these rows.
#[cfg(test)]
pub(crate) mod given {
    use super::{Origin, ReadState};
    use easm_events::Event;

    pub const ORG: &str = "org-1";

    /// Fold `events`, the n-th at time n (epoch microseconds), by actor `key-1`.
    pub fn events(events: impl IntoIterator<Item = Event>) -> ReadState {
        let mut state = ReadState::default();
        let org = ORG.into();
        for (at, e) in events.into_iter().enumerate() {
            let origin = Origin {
                org_id: &org,
                at: at as i64,
                actor_id: "key-1",
            };
            state.fold(origin, &e);
        }
        state
    }
}
