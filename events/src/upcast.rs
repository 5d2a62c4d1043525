//! Reading stored events: old schema versions are upcast to the current shape before they are
//! decoded, so the rest of the code only ever sees current types.

use crate::catalogue::*;
use serde_json::Value;

#[derive(Debug, PartialEq)]
pub enum DecodeError {
    UnknownType(String),
    UnsupportedVersion(String, i32),
    Invalid(String, String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::UnknownType(t) => write!(f, "unknown event type {t}"),
            DecodeError::UnsupportedVersion(t, v) => write!(f, "{t} has no schema version {v}"),
            DecodeError::Invalid(t, e) => write!(f, "{t}: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// `asset.added` v1 (the first pre-release format) had no `tags` or `criticality`; v2 added both.
fn upcast_asset_added_v1(mut data: Value) -> Value {
    if let Value::Object(m) = &mut data {
        m.entry("tags").or_insert_with(|| Value::Array(vec![]));
        m.entry("criticality")
            .or_insert_with(|| Value::String("medium".into()));
    }
    data
}

/// Bring `data` from `version` to the current version of `event_type`.
fn upcast(event_type: &str, version: i32, data: Value) -> Result<Value, DecodeError> {
    let current = EVENT_TYPES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, v)| *v)
        .ok_or_else(|| DecodeError::UnknownType(event_type.to_string()))?;
    let mut data = data;
    let mut v = version;
    while v < current {
        data = match (event_type, v) {
            ("asset.added", 1) => upcast_asset_added_v1(data),
            _ => return Err(DecodeError::UnsupportedVersion(event_type.into(), version)),
        };
        v += 1;
    }
    if v != current || version < 1 {
        return Err(DecodeError::UnsupportedVersion(event_type.into(), version));
    }
    Ok(data)
}

/// Decode a stored event into its current typed form. Current versions deserialize straight from
/// the stored JSON; only old ones are copied to be upcast.
pub fn decode(event_type: &str, version: i32, data: &Value) -> Result<Event, DecodeError> {
    let upcasted;
    let data = if EVENT_TYPES.contains(&(event_type, version)) {
        data
    } else {
        upcasted = upcast(event_type, version, data.clone())?;
        &upcasted
    };
    fn parse<T: serde::de::DeserializeOwned>(t: &str, d: &Value) -> Result<T, DecodeError> {
        T::deserialize(d).map_err(|e| DecodeError::Invalid(t.into(), e.to_string()))
    }
    Ok(match event_type {
        "org.created" => Event::OrgCreated(parse(event_type, data)?),
        "api_key.created" => Event::ApiKeyCreated(parse(event_type, data)?),
        "api_key.revoked" => Event::ApiKeyRevoked(parse(event_type, data)?),
        "user.added" => Event::UserAdded(parse(event_type, data)?),
        "user.role_changed" => Event::UserRoleChanged(parse(event_type, data)?),
        "user.removed" => Event::UserRemoved(parse(event_type, data)?),
        "group.created" => Event::GroupCreated(parse(event_type, data)?),
        "group.renamed" => Event::GroupRenamed(parse(event_type, data)?),
        "group.deleted" => Event::GroupDeleted(parse(event_type, data)?),
        "asset.added" => Event::AssetAdded(parse(event_type, data)?),
        "asset.updated" => Event::AssetUpdated(parse(event_type, data)?),
        "asset.removed" => Event::AssetRemoved(parse(event_type, data)?),
        "webhook.created" => Event::WebhookCreated(parse(event_type, data)?),
        "webhook.updated" => Event::WebhookUpdated(parse(event_type, data)?),
        "webhook.deleted" => Event::WebhookDeleted(parse(event_type, data)?),
        "webhook.secret_rotated" => Event::WebhookSecretRotated(parse(event_type, data)?),
        "endpoint.disabled" => Event::EndpointDisabled(parse(event_type, data)?),
        "access.denied" => Event::AccessDenied(parse(event_type, data)?),
        "risk.changed" => Event::RiskChanged(parse(event_type, data)?),
        "scan.requested" => Event::ScanRequested(parse(event_type, data)?),
        "scan.started" => Event::ScanStarted(parse(event_type, data)?),
        "scan.progressed" => Event::ScanProgressed(parse(event_type, data)?),
        "scan.completed" => Event::ScanCompleted(parse(event_type, data)?),
        "scan.failed" => Event::ScanFailed(parse(event_type, data)?),
        "scan.cancelled" => Event::ScanCancelled(parse(event_type, data)?),
        "scan.deleted" => Event::ScanDeleted(parse(event_type, data)?),
        "finding.new" => Event::FindingNew(parse(event_type, data)?),
        "finding.redetected" => Event::FindingRedetected(parse(event_type, data)?),
        "finding.reopened" => Event::FindingReopened(parse(event_type, data)?),
        "finding.resolved" => Event::FindingResolved(parse(event_type, data)?),
        "finding.status_changed" => Event::FindingStatusChanged(parse(event_type, data)?),
        "finding.updated" => Event::FindingUpdated(parse(event_type, data)?),
        "monitor.created" => Event::MonitorCreated(parse(event_type, data)?),
        "monitor.updated" => Event::MonitorUpdated(parse(event_type, data)?),
        "monitor.deleted" => Event::MonitorDeleted(parse(event_type, data)?),
        "monitor.triggered" => Event::MonitorTriggered(parse(event_type, data)?),
        "alert.created" => Event::AlertCreated(parse(event_type, data)?),
        "alert.acknowledged" => Event::AlertAcknowledged(parse(event_type, data)?),
        "alert.resolved" => Event::AlertResolved(parse(event_type, data)?),
        other => return Err(DecodeError::UnknownType(other.into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn asset_added_v1_is_upcast_to_current() {
        let v1 = json!({"assetId": "a", "groupId": "g", "value": "x.com", "type": "domain"});
        let e = decode("asset.added", 1, &v1).unwrap();
        assert_eq!(
            e,
            Event::AssetAdded(AssetAdded {
                asset_id: "a".into(),
                group_id: "g".into(),
                value: "x.com".into(),
                asset_type: "domain".into(),
                tags: vec![],
                criticality: "medium".into(),
            })
        );
    }

    #[test]
    fn every_event_round_trips_at_its_current_version() {
        let e = Event::AssetUpdated(AssetUpdated {
            asset_id: "a".into(),
            group_id: None,
            tags: Some(vec!["prod".into()]),
            criticality: None,
        });
        assert_eq!(
            decode(e.event_type(), e.schema_version(), &e.data()).unwrap(),
            e
        );
        assert_eq!(e.data(), json!({"assetId": "a", "tags": ["prod"]}));
    }

    #[test]
    fn unknown_and_future_versions_are_errors() {
        assert_eq!(
            decode("nope", 1, &json!({})),
            Err(DecodeError::UnknownType("nope".into()))
        );
        assert!(matches!(
            decode("group.created", 2, &json!({})),
            Err(DecodeError::UnsupportedVersion(..))
        ));
    }
}
