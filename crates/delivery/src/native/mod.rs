//! Destinations spoken to in their own protocols, several messages to a request: Splunk's HTTP
//! Event Collector, Elasticsearch's `_bulk` API and syslog. Each answers, message by message,
//! what became of it, so retries, dead letters and auto-disable work per message as they do for
//! webhooks.

pub mod elasticsearch;
pub mod splunk_hec;
pub mod syslog;

use crate::schedule::{Outcome, Verdict};
use crate::sender::{Request, Route, Sender, Sent};

/// What became of one message of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemVerdict {
    pub verdict: Verdict,
    /// Why, when it was not delivered and the request as a whole does not say.
    pub error: Option<String>,
}

impl ItemVerdict {
    pub fn delivered() -> Self {
        ItemVerdict {
            verdict: Verdict::Delivered,
            error: None,
        }
    }

    pub fn of(verdict: Verdict, error: Option<String>) -> Self {
        ItemVerdict { verdict, error }
    }
}

/// A request's answer: the request as the attempt log records it, each message's verdict, and
/// a reason to disable the endpoint when the destination refuses its configuration (a bad
/// token or API key), which no retry can fix.
#[derive(Debug)]
pub struct Answer {
    pub sent: Sent,
    pub items: Vec<ItemVerdict>,
    pub disable: Option<String>,
}

impl Answer {
    /// Every message as the request went.
    pub fn all(sent: Sent, n: usize) -> Answer {
        let verdict = crate::classify(&sent.outcome);
        Answer {
            items: vec![ItemVerdict::of(verdict, None); n],
            sent,
            disable: None,
        }
    }
}

/// A destination's reading of its answer to a request of `n` messages: each message's verdict,
/// and a reason to disable the endpoint.
pub type Judge = fn(u16, &[u8], usize, &Outcome) -> (Vec<ItemVerdict>, Option<String>);

/// One HTTP request carrying `n` messages.
pub struct Post<'a> {
    pub url: String,
    pub route: &'a Route,
    /// The destination's own `Authorization`, sent beside the endpoint's headers.
    pub authorization: String,
    pub headers: &'a [(String, String)],
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub n: usize,
}

/// Send `p` and judge the answer (a request that got none goes as its transport error says).
pub async fn post(sender: &Sender, p: Post<'_>, judge: Judge) -> Answer {
    let mut headers = vec![("authorization".to_string(), p.authorization)];
    headers.extend(p.headers.iter().cloned());
    let sent = sender
        .send(Request {
            url: &p.url,
            route: p.route,
            content_type: p.content_type,
            headers: &headers,
            signed: None,
            body: p.body,
        })
        .await;
    let Some(status) = sent.status_code else {
        return Answer::all(sent, p.n);
    };
    let (items, disable) = judge(status, &sent.full, p.n, &sent.outcome);
    Answer {
        sent,
        items,
        disable,
    }
}
