use easm_events::{format_timestamp, RecordedEvent};
use serde_json::{json, Value};

/// Version of the delivered JSON body; bumped on any incompatible change.
pub const PAYLOAD_VERSION: u32 = 1;

/// `webhook-id`, also sent as `Idempotency-Key`: the same for every retry of one event to one
/// endpoint, different across endpoints.
pub fn message_id(event: &RecordedEvent, webhook_id: &str) -> String {
    format!("evt_{}_{}", event.event_id.simple(), webhook_id)
}

/// `{"type", "timestamp", "data"}` as Standard Webhooks suggests; `data` holds the event's own
/// fields plus `eventId`, `orgId`, `position`, `schemaVersion` and `payloadVersion`.
pub fn payload(event: &RecordedEvent) -> Value {
    let mut data = match &event.data {
        Value::Object(m) => m.clone(),
        other => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other.clone());
            m
        }
    };
    data.insert("eventId".into(), json!(event.event_id.to_string()));
    data.insert("orgId".into(), json!(event.org_id));
    data.insert("position".into(), json!(event.position));
    data.insert("schemaVersion".into(), json!(event.schema_version));
    data.insert("payloadVersion".into(), json!(PAYLOAD_VERSION));
    json!({
        "type": event.event_type,
        "timestamp": format_timestamp(&event.occurred_at),
        "data": data,
    })
}
