//! One attempt of a job (one message, or a batch for an endpoint that batches): sent in the
//! endpoint's kind, and each message's outcome turned into its next step: delivered, retried on
//! the schedule, or failed for good.

use crate::endpoints::Target;
use crate::native::syslog::Syslog;
use crate::native::{elasticsearch, splunk_hec, Answer, ItemVerdict};
use crate::sender::{Request, Sender, Sent, Signed};
use crate::{sign, Outcome, RetrySchedule, Verdict};
use easm_app::trace_context;
use easm_events::{EndpointKind, PayloadFormat, WebhookId};
use easm_store::{now_micros, Attempt, DueDelivery, Finished, NextStep};
use tracing::{Instrument, Span};

/// What sends: HTTP for webhooks, chat and the HTTP-based native kinds, connections for syslog.
#[derive(Clone)]
pub struct Senders {
    pub http: Sender,
    pub syslog: Syslog,
    pub schedule: RetrySchedule,
}

/// What an attempt came to: each message's outcome, and a reason to disable the endpoint.
pub struct Done {
    pub finished: Vec<Finished>,
    pub disable: Option<String>,
}

/// The span of one request to an endpoint (a client span), `messages` in it; `attempt` counts
/// the message's attempts (1 for a batch, whose messages may each be at another).
fn attempt_span(target: &Target, messages: usize, attempt: i64) -> Span {
    tracing::info_span!(
        "delivery attempt",
        otel.kind = "client",
        endpoint.kind = target.options.kind.as_str(),
        messages,
        attempt,
        http.response.status_code = tracing::field::Empty,
        error = tracing::field::Empty,
    )
}

fn record_answer(span: &Span, answer: &Answer) {
    if let Some(code) = answer.sent.status_code {
        span.record("http.response.status_code", code);
    }
    if let Some(error) = &answer.sent.error {
        span.record("error", error.as_str());
    }
}

/// A job that cannot be attempted at all: its messages fail with this reason, no attempt made.
pub struct Unsendable(pub &'static str);

/// How an endpoint's requests go, with what they need, checked before a job is attempted.
pub enum Via<'a> {
    /// Signed HTTP requests, one message each (webhooks, Slack, Teams).
    Signed,
    SplunkHec {
        token: &'a str,
    },
    Elasticsearch {
        api_key: &'a str,
        index: &'a str,
    },
    Syslog,
}

impl Senders {
    /// How `target` is sent to, or why it cannot be.
    pub fn via(target: &Target) -> Result<Via<'_>, Unsendable> {
        let credential = |name: &str, missing: &'static str| {
            target
                .credentials
                .get(name)
                .map(String::as_str)
                .ok_or(Unsendable(missing))
        };
        Ok(match target.options.kind {
            EndpointKind::SplunkHec => Via::SplunkHec {
                token: credential("token", "endpoint has no HEC token")?,
            },
            EndpointKind::Elasticsearch => Via::Elasticsearch {
                api_key: credential("apiKey", "endpoint has no API key")?,
                index: target
                    .options
                    .index
                    .as_deref()
                    .ok_or(Unsendable("endpoint has no index"))?,
            },
            EndpointKind::Syslog => Via::Syslog,
            EndpointKind::Webhook | EndpointKind::Slack | EndpointKind::Teams => {
                // The secrets sign the same whatever the message.
                if target.secrets.is_empty() || sign(&target.secrets, "", 0, b"").is_err() {
                    return Err(Unsendable("endpoint has no valid signing secret"));
                }
                Via::Signed
            }
        })
    }

    pub async fn attempt(
        &self,
        target: &Target,
        via: Via<'_>,
        webhook_id: &WebhookId,
        job: Vec<DueDelivery>,
    ) -> Done {
        let mut done = Done {
            finished: vec![],
            disable: None,
        };
        if let Via::Signed = via {
            // Messages queued for a kind that batched go one by one after the kind changed.
            for d in job {
                let started_at = now_micros();
                let span = attempt_span(target, 1, d.attempts + 1);
                trace_context::continue_from(&span, d.trace_parent.as_deref());
                let answer = self.one(target, &d).instrument(span.clone()).await;
                record_answer(&span, &answer);
                done.finished
                    .extend(self.outcomes(vec![d], answer, started_at, None));
            }
            return done;
        }
        let started_at = now_micros();
        let payloads: Vec<&str> = job.iter().map(|d| d.payload.as_str()).collect();
        // A batch serves many traces: its span links to each message's.
        let span = attempt_span(target, job.len(), 1);
        trace_context::link_to(&span, job.iter().map(|d| d.trace_parent.as_deref()));
        let answer = async {
            match via {
                Via::SplunkHec { token } => {
                    splunk_hec::send(
                        &self.http,
                        &target.url,
                        token,
                        &target.route,
                        &target.headers,
                        &payloads,
                    )
                    .await
                }
                Via::Elasticsearch { api_key, index } => {
                    let docs: Vec<(&str, &str)> = job
                        .iter()
                        .map(|d| (d.delivery_id.as_str(), d.payload.as_str()))
                        .collect();
                    elasticsearch::send(
                        &self.http,
                        &target.url,
                        index,
                        api_key,
                        &target.route,
                        &target.headers,
                        &docs,
                    )
                    .await
                }
                Via::Syslog | Via::Signed => {
                    self.syslog
                        .send(webhook_id, &target.url, &target.route, &payloads)
                        .await
                }
            }
        }
        .instrument(span.clone())
        .await;
        record_answer(&span, &answer);
        let batch = Some((uuid::Uuid::now_v7().to_string(), job.len() as i64));
        done.disable = answer.disable.clone();
        done.finished = self.outcomes(job, answer, started_at, batch);
        done
    }

    /// One signed HTTP request (webhooks, Slack, Teams).
    async fn one(&self, target: &Target, d: &DueDelivery) -> Answer {
        let timestamp = chrono::Utc::now().timestamp();
        // `via` checked that the secrets sign.
        let signature = match sign(
            &target.secrets,
            &d.delivery_id,
            timestamp,
            d.payload.as_bytes(),
        ) {
            Ok(s) => s,
            Err(e) => {
                let sent = Sent {
                    outcome: Outcome::Refused,
                    error: Some(format!("refused: {e}")),
                    ..Default::default()
                };
                return Answer::all(sent, 1);
            }
        };
        let content_type = match (target.options.kind, target.options.format) {
            (EndpointKind::Webhook, PayloadFormat::CloudEvents) => "application/cloudevents+json",
            _ => "application/json",
        };
        let sent = self
            .http
            .send(Request {
                url: &target.url,
                route: &target.route,
                content_type,
                headers: &target.headers,
                signed: Some(Signed {
                    msg_id: &d.delivery_id,
                    timestamp,
                    signature: &signature,
                }),
                body: d.payload.clone().into_bytes(),
            })
            .await;
        Answer::all(sent, 1)
    }

    /// Each message's attempt and next step. In a FIFO line nothing overtakes a message that
    /// will be retried: the ones after it wait with it.
    fn outcomes(
        &self,
        job: Vec<DueDelivery>,
        answer: Answer,
        started_at: i64,
        batch: Option<(String, i64)>,
    ) -> Vec<Finished> {
        let mut items = answer.items;
        if job.iter().any(|d| d.fifo) {
            hold_behind_retries(&mut items);
        }
        let sent = answer.sent;
        job.into_iter()
            .zip(items)
            .map(|(d, item)| {
                let next = self.next_step(&item.verdict, d.schedule_step);
                Finished {
                    attempt: Some(Attempt {
                        started_at,
                        duration_ms: sent.duration.as_millis() as i64,
                        status_code: sent.status_code.map(i64::from),
                        error: item.error.or_else(|| sent.error.clone()),
                        response: sent.response.clone(),
                        batch: batch.clone(),
                    }),
                    delivery: d,
                    next,
                }
            })
            .collect()
    }

    fn next_step(&self, verdict: &Verdict, step: i64) -> NextStep {
        match verdict {
            Verdict::Delivered => NextStep::Succeeded,
            Verdict::GiveUp => NextStep::Failed,
            Verdict::Retry { at_least } => {
                let jitter = rand::random::<f64>() * 2.0 - 1.0;
                match self.schedule.delay(step, jitter) {
                    None => NextStep::Failed,
                    Some(delay) => NextStep::RetryAt {
                        at: now_micros()
                            + delay.max(at_least.unwrap_or_default()).as_micros() as i64,
                        schedule_step: step + 1,
                    },
                }
            }
        }
    }
}

/// After the first message to be retried, delivered ones are retried with it (a destination
/// that deduplicates, or drops what it had, takes them again in order).
fn hold_behind_retries(items: &mut [ItemVerdict]) {
    let Some(first) = items
        .iter()
        .position(|i| matches!(i.verdict, Verdict::Retry { .. }))
    else {
        return;
    };
    let held = items[first].verdict.clone();
    for i in &mut items[first + 1..] {
        if i.verdict == Verdict::Delivered {
            *i = ItemVerdict::of(
                held.clone(),
                Some("held behind an earlier message of its FIFO line".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_line_holds_behind_its_first_retry() {
        let retry = Verdict::Retry { at_least: None };
        let mut items = vec![
            ItemVerdict::delivered(),
            ItemVerdict::of(retry.clone(), None),
            ItemVerdict::of(Verdict::GiveUp, None),
            ItemVerdict::delivered(),
        ];
        hold_behind_retries(&mut items);
        let v: Vec<_> = items.into_iter().map(|i| i.verdict).collect();
        assert_eq!(
            v,
            [Verdict::Delivered, retry.clone(), Verdict::GiveUp, retry]
        );
    }
}
