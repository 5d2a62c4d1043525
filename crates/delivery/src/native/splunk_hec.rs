//! Splunk HTTP Event Collector: events (queued already in HEC's JSON envelope) posted together
//! to `/services/collector/event` with `Authorization: Splunk <token>`. HEC's answer codes
//! decide: success; a bad event (its number in `invalid-event-number`: the ones before it were
//! indexed, it is dead-lettered, the rest retried); server busy or failing (retry); a token or
//! index HEC refuses (the endpoint is disabled: no retry can fix it).

use super::{post, Answer, ItemVerdict, Post};
use crate::schedule::{Outcome, Verdict};
use crate::sender::{Route, Sender};
use serde::Deserialize;

pub const EVENT_PATH: &str = "/services/collector/event";

/// The collector's event endpoint under the configured base (which may name it already).
pub fn event_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with(EVENT_PATH) {
        base.to_string()
    } else {
        format!("{base}{EVENT_PATH}")
    }
}

#[derive(Deserialize)]
struct HecAnswer {
    #[serde(default)]
    text: String,
    code: i64,
    #[serde(rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
}

/// What HEC's answer means for the `n` events of the request.
pub fn judge(
    status: u16,
    body: &[u8],
    n: usize,
    fallback: &Outcome,
) -> (Vec<ItemVerdict>, Option<String>) {
    let all = |v: Verdict, e: Option<String>| vec![ItemVerdict::of(v, e); n];
    let Ok(a) = serde_json::from_slice::<HecAnswer>(body) else {
        return (all(crate::classify(fallback), None), None);
    };
    let why = format!("Splunk HEC: {} (code {})", a.text, a.code);
    match a.code {
        0 if (200..300).contains(&status) => (vec![ItemVerdict::delivered(); n], None),
        // Token disabled, required, invalid; incorrect index; a channel the token requires.
        1..=4 | 7 | 10 | 11 => (all(Verdict::GiveUp, Some(why.clone())), Some(why)),
        // No data, invalid data format, event field required or blank, indexed fields.
        5 | 6 | 12 | 13 | 15 => match a.invalid_event_number.filter(|i| *i < n) {
            Some(bad) => {
                let mut items = vec![ItemVerdict::delivered(); bad];
                items.push(ItemVerdict::of(Verdict::GiveUp, Some(why)));
                items.extend(vec![
                    ItemVerdict::of(
                        Verdict::Retry { at_least: None },
                        Some("not indexed: an earlier event of its batch was refused".into()),
                    );
                    n - bad - 1
                ]);
                (items, None)
            }
            None => (all(Verdict::GiveUp, Some(why)), None),
        },
        // Internal error, server busy, anything else: as the HTTP status says.
        _ => (all(crate::classify(fallback), Some(why)), None),
    }
}

/// Post `events` (HEC JSON objects) in one request.
pub async fn send(
    sender: &Sender,
    url: &str,
    token: &str,
    route: &Route,
    headers: &[(String, String)],
    events: &[&str],
) -> Answer {
    let request = Post {
        url: event_url(url),
        route,
        authorization: format!("Splunk {token}"),
        headers,
        content_type: "application/json",
        body: events.join("\n").into_bytes(),
        n: events.len(),
    };
    post(sender, request, judge).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Outcome {
        Outcome::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn answers_are_judged_as_hec_documents_them() {
        let (ok, off) = judge(200, br#"{"text":"Success","code":0}"#, 3, &status(200));
        assert!(ok.iter().all(|i| i.verdict == Verdict::Delivered) && off.is_none());
        let (bad_token, off) = judge(
            403,
            br#"{"text":"Invalid token","code":4}"#,
            2,
            &status(403),
        );
        assert!(bad_token.iter().all(|i| i.verdict == Verdict::GiveUp));
        assert_eq!(off.unwrap(), "Splunk HEC: Invalid token (code 4)");
        let (busy, off) = judge(
            503,
            br#"{"text":"Server is busy","code":9}"#,
            2,
            &status(503),
        );
        assert!(
            busy.iter()
                .all(|i| matches!(i.verdict, Verdict::Retry { .. }))
                && off.is_none()
        );
        let (partial, _) = judge(
            400,
            br#"{"text":"Invalid data format","code":6,"invalid-event-number":1}"#,
            3,
            &status(400),
        );
        assert_eq!(partial[0].verdict, Verdict::Delivered);
        assert_eq!(partial[1].verdict, Verdict::GiveUp);
        assert!(matches!(partial[2].verdict, Verdict::Retry { .. }));
        let (garbled, _) = judge(502, b"<html>", 1, &status(502));
        assert!(matches!(garbled[0].verdict, Verdict::Retry { .. }));
        assert_eq!(
            event_url("https://hec.example.com:8088/"),
            "https://hec.example.com:8088/services/collector/event"
        );
    }
}
