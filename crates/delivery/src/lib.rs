//! Webhook delivery: committed events fan out into a persisted queue of (event, endpoint)
//! deliveries, which workers in any number of processes send signed (Standard Webhooks), retry on
//! a persisted schedule, and log attempt by attempt.

mod attempt;
mod endpoints;
mod fanout;
mod native;
mod outstanding;
mod schedule;
mod sender;
mod signature;
mod worker;

pub use easm_domain::parse_duration;
pub use fanout::{Fanout, OutboxWakes};
pub use schedule::{
    classify, parse_retry_after, Outcome, RetrySchedule, Verdict, DEFAULT_SCHEDULE,
};
pub use sender::{Request, Route, Sender, Signed, USER_AGENT};
pub use signature::{sign, SignError};
pub use worker::{DeliveryConfig, Handoff, Worker};
