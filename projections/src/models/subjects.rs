//! What the read models know of the subjects of events (a finding's severity and title, the
//! asset it is on), for delivery: formats enrich messages with it, and endpoint filters match
//! on it.

use crate::models::assets::{AssetRow, Assets};
use crate::models::findings::{FindingRow, Findings};
use crate::read::ReadModels;
use crate::state::RowMap;
use crate::table::load;
use easm_events::formats::{AssetFacts, FindingFacts, Subject};
use easm_events::{RecordedEvent, Severity};
use easm_store::StoreError;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// Rows read per statement.
const CHUNK: usize = 500;

fn text<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data[key].as_str().filter(|s| !s.is_empty())
}

fn finding_facts(id: &str, f: &FindingRow) -> FindingFacts {
    let d = &f.detection;
    FindingFacts {
        id: id.to_string(),
        title: d.title.clone(),
        template_id: d.template_id.clone(),
        category: d.category.clone(),
        description: d.description.clone(),
        status: f.status.as_str().to_string(),
        matched_at: d.matched_at.clone(),
        cve: d.cve.clone(),
        cwe: d.cwe.clone(),
        cvss_score: d.cvss_score,
        references: d.references.clone(),
        remediation: d.remediation.clone(),
    }
}

fn asset_facts(id: &str, a: &AssetRow) -> AssetFacts {
    AssetFacts {
        id: id.to_string(),
        value: a.value.clone(),
        asset_type: a.asset_type.clone(),
        group_id: a.group_id.to_string(),
        tags: a.tags.clone(),
    }
}

/// An asset no longer in the read models, as its own event tells it (`asset.removed`).
fn asset_from_event(id: &str, data: &Value) -> Option<AssetFacts> {
    Some(AssetFacts {
        id: id.to_string(),
        value: text(data, "value")?.to_string(),
        asset_type: text(data, "assetType").unwrap_or_default().to_string(),
        group_id: text(data, "groupId").unwrap_or_default().to_string(),
        tags: serde_json::from_value(data["tags"].clone()).unwrap_or_default(),
    })
}

impl ReadModels {
    /// The subject of each event that has one (a finding, an asset, an alert's severity), by
    /// log position, in two statements per 500 findings and assets.
    pub async fn subjects(
        &self,
        events: &[RecordedEvent],
    ) -> Result<HashMap<i64, Subject>, StoreError> {
        let finding_ids: BTreeSet<String> = events
            .iter()
            .filter_map(|e| text(&e.data, "findingId").map(str::to_string))
            .collect();
        let mut conn = self.db.reader().acquire().await?;
        let mut findings: RowMap<FindingRow> = RowMap::new();
        load::<Findings>(&mut conn, CHUNK, &finding_ids, &mut findings).await?;
        let asset_ids: BTreeSet<String> = events
            .iter()
            .filter_map(|e| text(&e.data, "assetId").map(str::to_string))
            .chain(findings.values().flatten().map(|f| f.asset_id.to_string()))
            .collect();
        let mut assets: RowMap<AssetRow> = RowMap::new();
        load::<Assets>(&mut conn, CHUNK, &asset_ids, &mut assets).await?;
        let mut out = HashMap::new();
        for e in events {
            let finding =
                text(&e.data, "findingId").and_then(|id| Some((id, findings.get(id)?.as_ref()?)));
            let asset_id = text(&e.data, "assetId")
                .map(str::to_string)
                .or_else(|| finding.map(|(_, f)| f.asset_id.to_string()));
            let asset = asset_id.and_then(|id| match assets.get(&id) {
                Some(Some(a)) => Some(asset_facts(&id, a)),
                _ => asset_from_event(&id, &e.data),
            });
            let severity = text(&e.data, "severity")
                .and_then(Severity::parse)
                .or_else(|| finding.and_then(|(_, f)| Severity::parse(&f.detection.severity)));
            let subject = Subject {
                severity,
                finding: finding.map(|(id, f)| finding_facts(id, f)),
                asset,
            };
            if subject != Subject::default() {
                out.insert(e.position, subject);
            }
        }
        Ok(out)
    }
}
