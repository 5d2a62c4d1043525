//! Certificate transparency through a crt.sh-compatible JSON API: every logged certificate of
//! a domain's names, by `GET <base>/?q=%25.<domain>&output=json`.

use chrono::NaiveDateTime;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    name_value: String,
    #[serde(default)]
    common_name: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
}

/// Names under `domain` (wildcard labels stripped, lowercase), each with whether every
/// certificate naming it has expired.
pub async fn names(
    client: &reqwest::Client,
    base: &str,
    domain: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, bool>, String> {
    let url = format!("{}/?q=%25.{domain}&output=json", base.trim_end_matches('/'));
    let response = client
        .get(&url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("certificate transparency: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "certificate transparency: {} answered {}",
            base,
            response.status()
        ));
    }
    let entries: Vec<Entry> = response
        .json()
        .await
        .map_err(|e| format!("certificate transparency: not crt.sh JSON: {e}"))?;
    Ok(collect(entries, domain, chrono::Utc::now().naive_utc()))
}

fn collect(entries: Vec<Entry>, domain: &str, now: NaiveDateTime) -> BTreeMap<String, bool> {
    let suffix = format!(".{domain}");
    let mut out: BTreeMap<String, bool> = BTreeMap::new();
    for e in entries {
        let expired = e
            .not_after
            .as_deref()
            .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S").ok())
            .is_some_and(|t| t < now);
        let names = e.name_value.lines().chain(e.common_name.as_deref());
        for raw in names {
            let n = raw.trim().trim_start_matches("*.").trim_end_matches('.');
            let n = n.to_ascii_lowercase();
            if !n.ends_with(&suffix) || n.contains(['*', ' ', '@']) {
                continue;
            }
            let all_expired = out.entry(n).or_insert(true);
            *all_expired &= expired;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stripped_deduplicated_and_marked_expired_only_when_always_expired() {
        let entries: Vec<Entry> = serde_json::from_str(
            r#"[
            {"name_value":"*.example.com\nwww.example.com","common_name":"example.com","not_after":"2099-01-01T00:00:00"},
            {"name_value":"old.example.com\nWWW.example.com","not_after":"2001-01-01T00:00:00"},
            {"name_value":"mail.other.org\nevil.example.com.other.org","not_after":"2099-01-01T00:00:00"}
        ]"#,
        )
        .unwrap();
        let now =
            NaiveDateTime::parse_from_str("2026-12-06T00:00:00", "%Y-%m-%dT%H:%M:%S").unwrap();
        let found = collect(entries, "example.com", now);
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec![
                ("old.example.com".to_string(), true),
                ("www.example.com".to_string(), false),
            ]
        );
    }
}
