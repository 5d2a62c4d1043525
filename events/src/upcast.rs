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
            // v2 made `scanJobId` optional beside `discoveryJobId`: every v1 event is a v2 one.
            ("finding.new" | "finding.redetected" | "alert.created", 1) => data,
            // v2 added optional delivery options: a v1 endpoint is a plain webhook.
            ("webhook.created" | "webhook.updated", 1) => data,
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
    if EVENT_TYPES.contains(&(event_type, version)) {
        Event::build(event_type, data)
    } else {
        Event::build(event_type, &upcast(event_type, version, data.clone())?)
    }
}

/// [`decode`] from the stored text, without building a JSON tree first when the version is
/// current (a rebuild decodes every event of the log).
pub fn decode_str(event_type: &str, version: i32, data: &str) -> Result<Event, DecodeError> {
    if EVENT_TYPES.contains(&(event_type, version)) {
        Event::build(event_type, data)
    } else {
        let tree: Value = serde_json::from_str(data)
            .map_err(|e| DecodeError::Invalid(event_type.into(), e.to_string()))?;
        decode(event_type, version, &tree)
    }
}

/// Stored event data, as a JSON tree or as its text.
pub(crate) trait Source {
    fn parse<T: serde::de::DeserializeOwned>(&self, event_type: &str) -> Result<T, DecodeError>;
}

impl Source for &Value {
    fn parse<T: serde::de::DeserializeOwned>(&self, event_type: &str) -> Result<T, DecodeError> {
        T::deserialize(*self).map_err(|e| DecodeError::Invalid(event_type.into(), e.to_string()))
    }
}

impl Source for &str {
    fn parse<T: serde::de::DeserializeOwned>(&self, event_type: &str) -> Result<T, DecodeError> {
        serde_json::from_str(self)
            .map_err(|e| DecodeError::Invalid(event_type.into(), e.to_string()))
    }
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
                discovery_job_id: None,
            })
        );
    }

    #[test]
    fn decoding_the_stored_text_agrees_with_decoding_its_tree() {
        let v1 = json!({"assetId": "a", "groupId": "g", "value": "x.com", "type": "domain"});
        let v2 = json!({"assetId": "a", "groupId": "g", "value": "x.com", "type": "domain",
            "tags": ["t"], "criticality": "high"});
        for (version, data) in [(1, &v1), (2, &v2)] {
            assert_eq!(
                decode_str("asset.added", version, &data.to_string()),
                decode("asset.added", version, data)
            );
        }
        assert!(matches!(
            decode_str("asset.added", 2, "{\"assetId\": 1}"),
            Err(DecodeError::Invalid(..))
        ));
        assert_eq!(
            decode_str("nope", 1, "{}"),
            Err(DecodeError::UnknownType("nope".into()))
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
