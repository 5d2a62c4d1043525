//! Destinations spoken to in their own protocols, several messages to a request: Splunk's HTTP
//! Event Collector, Elasticsearch's `_bulk` API and syslog. Each answers, message by message,
//! what became of it, so retries, dead letters and auto-disable work per message as they do for
//! webhooks.

pub mod elasticsearch;
pub mod splunk_hec;
pub mod syslog;

use crate::schedule::Verdict;
use crate::sender::Sent;

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
