//! What a webhook receiver gets: the JSON bodies of event messages, of their audit forms and of
//! test messages, and their message ids. Versioned with `PAYLOAD_VERSION`; schemas in
//! `events/schemas/payload.v1.json`, `audit.v1.json` and `webhook.test.v1.json`.

use crate::ids::{OrgId, WebhookId};
use crate::{format_timestamp, RecordedEvent};
use chrono::{DateTime, Utc};
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

/// `webhook-id` of an event's audit form: distinct from the event's own message to the same
/// endpoint.
pub fn audit_message_id(event: &RecordedEvent, webhook_id: &str) -> String {
    format!("aud_{}_{}", event.event_id.simple(), webhook_id)
}

/// The audit form of any event (`audit.<type>`): who did what to which resource, when, from
/// where, under which request. `details` is the event's data without key hashes.
pub fn audit_payload(event: &RecordedEvent) -> Value {
    let family = event
        .event_type
        .split_once('.')
        .map_or(event.event_type.as_str(), |(f, _)| f);
    let id_field = match family {
        "api_key" | "access" => "keyId",
        "user" => "userId",
        "group" => "groupId",
        "asset" => "assetId",
        "webhook" | "endpoint" => "webhookId",
        "scan" => "scanJobId",
        "finding" => "findingId",
        "monitor" => "monitorId",
        "alert" => "alertId",
        "mcp" => "tool",
        _ => "orgId",
    };
    let resource_id = event
        .data
        .get(id_field)
        .and_then(Value::as_str)
        .unwrap_or(&event.stream_id);
    let mut details = event.data.clone();
    if let Value::Object(m) = &mut details {
        m.remove("keyHash");
    }
    json!({
        "type": format!("audit.{}", event.event_type),
        "timestamp": format_timestamp(&event.occurred_at),
        "data": {
            "eventId": event.event_id.to_string(),
            "orgId": event.org_id,
            "action": event.event_type,
            "actor": event.actor,
            "resource": {"type": family, "id": resource_id},
            "requestId": event.request_id,
            "correlationId": event.correlation_id,
            "position": event.position,
            "details": details,
            "payloadVersion": PAYLOAD_VERSION,
        },
    })
}

/// A `webhook.test` message to an endpoint, sent on request to check a receiver.
pub fn test_payload(org_id: &OrgId, webhook_id: &WebhookId, at: &DateTime<Utc>) -> Value {
    json!({
        "type": "webhook.test",
        "timestamp": format_timestamp(at),
        "data": {
            "webhookId": webhook_id,
            "orgId": org_id,
            "message": "This is a test message from easm.",
            "payloadVersion": PAYLOAD_VERSION,
        },
    })
}
