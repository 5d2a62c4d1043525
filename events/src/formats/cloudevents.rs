//! CloudEvents 1.0, structured content mode (`application/cloudevents+json`).

use super::Message;
use serde_json::{json, Value};

/// `id` is the message id (one per event and endpoint, the same on retries, so receivers
/// deduplicate on `source` + `id` as the specification asks); `type` is `com.easm.<type>`.
pub fn event(m: &Message) -> Value {
    let mut e = json!({
        "specversion": "1.0",
        "id": m.id,
        "source": format!("/easm/orgs/{}", m.org_id()),
        "type": format!("com.easm.{}", m.message_type()),
        "time": m.timestamp(),
        "datacontenttype": "application/json",
        "data": m.data(),
    });
    if let Some(s) = m.resource_id() {
        e["subject"] = json!(s);
    }
    if let Some(s) = m.severity() {
        // Extension attribute: lowercase letters, at most 20.
        e["easmseverity"] = json!(s.as_str());
    }
    e
}
