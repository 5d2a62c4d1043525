//! Elasticsearch: ECS documents (queued already) sent with `_bulk` as `create` actions whose
//! `_id` is the message id, so a retried document cannot be indexed twice (a `409` for it means
//! it is there already). Items are judged one by one: retried on `429` and `5xx`, dead-lettered
//! with Elasticsearch's reason otherwise (mapping errors). An API key Elasticsearch refuses
//! disables the endpoint.

use super::{post, Answer, ItemVerdict, Post};
use crate::schedule::Verdict;
use crate::sender::{Route, Sender};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Bulk {
    items: Vec<Value>,
}

/// The verdict of one item of a `_bulk` answer (`{"create": {"status", "error"}}`).
fn item(v: &Value) -> ItemVerdict {
    let action = v
        .as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or_default();
    let status = action["status"].as_u64().unwrap_or(0);
    let reason = || {
        let e = &action["error"];
        Some(format!(
            "Elasticsearch: {} {}: {}",
            status,
            e["type"].as_str().unwrap_or("error"),
            e["reason"].as_str().unwrap_or("no reason given")
        ))
    };
    match status {
        200..=299 => ItemVerdict::delivered(),
        // `create` of an _id that exists: a retry of a document already indexed.
        409 => ItemVerdict::delivered(),
        429 | 500..=599 => ItemVerdict::of(Verdict::Retry { at_least: None }, reason()),
        _ => ItemVerdict::of(Verdict::GiveUp, reason()),
    }
}

/// What the answer means for the `n` documents of the request.
pub fn judge(
    status: u16,
    body: &[u8],
    n: usize,
    outcome: &crate::Outcome,
) -> (Vec<ItemVerdict>, Option<String>) {
    let all = |v: Verdict, e: Option<String>| vec![ItemVerdict::of(v, e); n];
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["reason"].as_str().map(str::to_string));
    match status {
        200..=299 => match serde_json::from_slice::<Bulk>(body) {
            Ok(b) if b.items.len() == n => (b.items.iter().map(item).collect(), None),
            _ => (
                all(
                    Verdict::Retry { at_least: None },
                    Some("Elasticsearch: the _bulk answer does not list every document".into()),
                ),
                None,
            ),
        },
        401 | 403 => {
            let why = format!(
                "Elasticsearch: HTTP {status}: {}",
                reason.unwrap_or_else(|| "the API key is refused".into())
            );
            (all(Verdict::GiveUp, Some(why.clone())), Some(why))
        }
        _ => (
            all(
                crate::classify(outcome),
                reason.map(|r| format!("Elasticsearch: {r}")),
            ),
            None,
        ),
    }
}

/// Send `docs` (message id, ECS document) to `index` in one `_bulk` request.
pub async fn send(
    sender: &Sender,
    url: &str,
    index: &str,
    api_key: &str,
    route: &Route,
    headers: &[(String, String)],
    docs: &[(&str, &str)],
) -> Answer {
    let mut body = String::new();
    for (id, doc) in docs {
        body.push_str(&json!({"create": {"_index": index, "_id": id}}).to_string());
        body.push('\n');
        body.push_str(doc);
        body.push('\n');
    }
    let request = Post {
        url: format!("{}/_bulk", url.trim_end_matches('/')),
        route,
        authorization: format!("ApiKey {api_key}"),
        headers,
        content_type: "application/x-ndjson",
        body: body.into_bytes(),
        n: docs.len(),
    };
    post(sender, request, judge).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_items_are_judged_one_by_one() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"e","_id":"a","status":201}},
            {"create":{"_index":"e","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_index":"e","_id":"c","status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [x]"}}},
            {"create":{"_index":"e","_id":"d","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        let st = |code| crate::Outcome::Status {
            code,
            retry_after: None,
        };
        let (items, off) = judge(200, body, 4, &st(200));
        assert!(off.is_none());
        assert_eq!(items[0].verdict, Verdict::Delivered);
        assert_eq!(items[1].verdict, Verdict::Delivered);
        assert_eq!(items[2].verdict, Verdict::GiveUp);
        assert!(items[2]
            .error
            .as_deref()
            .unwrap()
            .contains("document_parsing_exception"));
        assert!(matches!(items[3].verdict, Verdict::Retry { .. }));
        let (refused, off) = judge(
            401,
            br#"{"error":{"reason":"unable to authenticate"}}"#,
            2,
            &st(401),
        );
        assert!(refused.iter().all(|i| i.verdict == Verdict::GiveUp));
        assert!(off.unwrap().contains("unable to authenticate"));
        let (busy, _) = judge(503, b"", 2, &st(503));
        assert!(busy
            .iter()
            .all(|i| matches!(i.verdict, Verdict::Retry { .. })));
    }
}
