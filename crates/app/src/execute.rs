//! The one way a command runs: decide on loaded state, append with the versions the decision was
//! based on and its reservations, and when anything moved meanwhile, decide again (bounded).

use crate::key_cache::KEY_EVENTS;
use crate::trace_context;
use crate::{App, CommandError};
use easm_domain::{Aggregate, DomainError};
use easm_events::{Event, EventMeta, OrgId, RecordedEvent};
use easm_store::{AppendError, AppendRequest, Constraint, StreamAppend};
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;

/// How many times a command is decided again after losing a race, before answering 409.
const MAX_ATTEMPTS: u32 = 8;

/// One decision ready to append: events per stream, and the constraints they were decided under.
pub(crate) struct Decision {
    pub streams: Vec<StreamAppend>,
    pub constraints: Vec<Constraint>,
}

impl Decision {
    pub fn none() -> Self {
        Decision {
            streams: vec![],
            constraints: vec![],
        }
    }

    pub fn one(stream_id: String, expected_version: i64, events: Vec<Event>) -> Self {
        Decision {
            streams: vec![StreamAppend {
                stream_id,
                expected_version,
                events,
            }],
            constraints: vec![],
        }
    }

    /// Events of another stream, appended with these.
    pub fn push(&mut self, stream_id: String, expected_version: i64, events: Vec<Event>) {
        if !events.is_empty() {
            self.streams.push(StreamAppend {
                stream_id,
                expected_version,
                events,
            });
        }
    }

    /// Another decision's appends and constraints, committed with this one's.
    pub fn extend(&mut self, other: Decision) {
        self.streams.extend(other.streams);
        self.constraints.extend(other.constraints);
    }

    pub fn is_empty(&self) -> bool {
        self.streams.iter().all(|s| s.events.is_empty())
    }
}

/// A plan's limit on the reservations of one scope (scans this month, monitors...).
pub(crate) struct Quota<'a> {
    pub scope: &'a str,
    /// What the plan calls it, e.g. `scans per month`.
    pub name: &'static str,
    pub max: Option<u64>,
    pub plan: easm_domain::Plan,
}

impl App {
    /// Refuse (402) when `quota`'s scope is full now, and hold the append to it, which then
    /// claims `key` in the scope.
    pub(crate) async fn within(
        &self,
        org_id: &OrgId,
        quota: &Quota<'_>,
        key: &str,
        d: &mut Decision,
    ) -> Result<(), CommandError> {
        if let Some(max) = quota.max {
            if self.log.count_reservations(org_id, quota.scope).await? >= max {
                return Err(DomainError::PlanLimit {
                    limit: quota.name,
                    max,
                    plan: quota.plan.as_str().into(),
                }
                .into());
            }
            d.constraints.push(Constraint::AtMost {
                scope: quota.scope.into(),
                max,
            });
        }
        d.constraints.push(Constraint::Claim {
            scope: quota.scope.into(),
            key: key.into(),
            owner: key.into(),
        });
        Ok(())
    }

    /// Decide and append, deciding again when the state moved underneath. `decide` is re-run
    /// from scratch on every attempt; once committed, the read models hold the events. A span
    /// (`command`) covers it all, with what came of it and the types of the events recorded.
    pub(crate) async fn execute<F, Fut>(
        &self,
        org_id: &OrgId,
        meta: &EventMeta,
        decide: F,
    ) -> Result<Vec<RecordedEvent>, CommandError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Decision, CommandError>>,
    {
        let span = tracing::info_span!(
            "command",
            outcome = tracing::field::Empty,
            events = tracing::field::Empty
        );
        let done = self
            .decide_and_append(org_id, meta, decide)
            .instrument(span.clone())
            .await;
        let outcome = match &done {
            Ok(events) if events.is_empty() => "unchanged",
            Ok(events) => {
                for e in events {
                    metrics::counter!("easm_events_appended_total", "type" => e.event_type.clone())
                        .increment(1);
                }
                "committed"
            }
            Err(CommandError::Domain(_)) => "refused",
            Err(CommandError::Contention(_)) => "contention",
            Err(CommandError::Store(_)) => "failed",
        };
        metrics::counter!("easm_commands_total", "outcome" => outcome).increment(1);
        span.record("outcome", outcome);
        if let Ok(events) = &done {
            let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
            span.record("events", types.join(",").as_str());
        }
        done
    }

    async fn decide_and_append<F, Fut>(
        &self,
        org_id: &OrgId,
        meta: &EventMeta,
        mut decide: F,
    ) -> Result<Vec<RecordedEvent>, CommandError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Decision, CommandError>>,
    {
        // A store still busy on the last attempt is said as such, not as contention.
        let mut busy = None;
        for attempt in 1..=MAX_ATTEMPTS {
            let d = decide().await?;
            if d.is_empty() {
                return Ok(vec![]);
            }
            // The events keep the append's trace context: what they cause later (deliveries)
            // joins the trace of the request that caused them.
            let span = tracing::info_span!("append", attempt);
            let req = AppendRequest {
                org_id: org_id.clone(),
                meta: EventMeta {
                    trace_parent: trace_context::traceparent(&span),
                    ..meta.clone()
                },
                streams: d.streams,
                constraints: d.constraints,
            };
            match self.log.append(req).instrument(span).await {
                Ok(events) => {
                    self.feed.push(&events);
                    if events
                        .iter()
                        .any(|e| KEY_EVENTS.contains(&e.event_type.as_str()))
                    {
                        self.keys.clear();
                    }
                    return Ok(events);
                }
                Err(AppendError::Conflict { .. } | AppendError::Constraint(_)) => {
                    metrics::counter!("easm_append_retries_total", "reason" => "conflict")
                        .increment(1);
                    busy = None;
                }
                Err(AppendError::Store(e)) if e.is_transient() => {
                    metrics::counter!("easm_append_retries_total", "reason" => "transient")
                        .increment(1);
                    busy = Some(e);
                }
                Err(AppendError::Store(e)) => return Err(e.into()),
                Err(AppendError::TooLarge(n)) => {
                    return Err(
                        DomainError::validation("assets", format!("{n} items is too many")).into(),
                    )
                }
            }
            let jitter = rand::random::<u64>() % (2 << attempt.min(6));
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        Err(match busy {
            Some(e) => e.into(),
            None => CommandError::Contention(MAX_ATTEMPTS),
        })
    }

    /// An aggregate's state and the version it was read at.
    pub(crate) async fn load<A: Aggregate>(
        &self,
        org_id: &OrgId,
        stream: &str,
    ) -> Result<(i64, A), CommandError> {
        let (version, events) = self.log.load(org_id, stream).await?;
        Ok((version, A::from_events(&events)))
    }

    /// The states of many aggregates of one kind and the versions they were read at, in the
    /// order of `streams`, read in few round trips.
    pub(crate) async fn load_many<A: Aggregate>(
        &self,
        org_id: &OrgId,
        streams: &[&str],
    ) -> Result<Vec<(i64, A)>, CommandError> {
        let mut found = self.log.load_many(org_id, streams).await?;
        Ok(streams
            .iter()
            .map(|s| match found.remove(*s) {
                Some((version, events)) => (version, A::from_events(&events)),
                None => (0, A::from_events(&[])),
            })
            .collect())
    }

    /// A command on one stream that needs nothing but that stream's state; answers the events
    /// it recorded.
    pub(crate) async fn on_stream<A: Aggregate>(
        &self,
        org_id: &OrgId,
        meta: &EventMeta,
        stream: String,
        decide: impl Fn(&A) -> Result<Vec<Event>, DomainError>,
    ) -> Result<Vec<RecordedEvent>, CommandError> {
        self.execute(org_id, meta, || async {
            let (v, state) = self.load::<A>(org_id, &stream).await?;
            Ok(Decision::one(stream.clone(), v, decide(&state)?))
        })
        .await
    }

    /// A new stream's first events, decided beforehand (nothing to load).
    pub(crate) async fn create(
        &self,
        org_id: &OrgId,
        meta: &EventMeta,
        stream: String,
        events: Vec<Event>,
    ) -> Result<Vec<RecordedEvent>, CommandError> {
        self.execute(org_id, meta, || {
            let d = Decision::one(stream.clone(), 0, events.clone());
            async move { Ok(d) }
        })
        .await
    }
}
