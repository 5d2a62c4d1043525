//! HTTP handlers, one file per resource. Each parses, authorizes, calls the command side or the read
//! models, and maps the result.

pub mod assets;
pub mod audit;
pub mod audit_webhook;
pub mod dashboard;
pub mod deliveries;
pub mod discovery;
pub mod findings;
pub mod groups;
pub mod health;
pub mod keys;
pub mod monitors;
pub mod org;
mod sarif;
pub mod scan_schedules;
pub mod scans;
pub mod webhooks;

use serde::{Deserialize, Deserializer};

/// Ids are strings, but clients of the reference API send numbers too (`"groupId": 2`).
pub fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(u64),
    }
    match Option::<Id>::deserialize(d)? {
        None => Ok(None),
        Some(Id::S(s)) => Ok(Some(s)),
        Some(Id::N(n)) if i64::try_from(n).is_ok() => Ok(Some(n.to_string())),
        Some(Id::N(n)) => Err(serde::de::Error::custom(format!(
            "{n} is not an id (numbers go up to 2^63 - 1)"
        ))),
    }
}
