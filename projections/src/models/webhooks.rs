//! Webhook endpoints (the audit log webhook among them): url, subscribed events, enabled, how
//! they take their messages, when the secret was last rotated. Secrets and write-only values are
//! never in the read models; views show the write-only ones masked.

use crate::read::{iso, Page, PageRequest, ReadModels};
use crate::state::{create, live, Origin, RowMap};
use crate::table::{id, to_json, ReadModel, Table};
use easm_domain::{batching, credential_names, MASK};
use easm_events::{DeliveryFilter, EndpointOptions, Event, OrgId, WebhookId};
use easm_store::{AnyRow, Row, StoreError, Val};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookRow {
    pub org_id: OrgId,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub options: EndpointOptions,
    pub rotated_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub(crate) struct Webhooks;

impl ReadModel for Webhooks {
    type Row = WebhookRow;
    const TABLE: Table = Table {
        name: "rm_webhooks",
        pk: "webhook_id",
        columns: &[
            "org_id",
            "url",
            "events",
            "description",
            "enabled",
            "options",
            "rotated_at",
            "created_at",
            "updated_at",
        ],
    };

    fn key(event: &Event) -> Option<&str> {
        match event {
            Event::WebhookCreated(w) => Some(w.webhook_id.as_str()),
            Event::WebhookUpdated(w) => Some(w.webhook_id.as_str()),
            Event::WebhookDeleted(w) => Some(w.webhook_id.as_str()),
            Event::WebhookSecretRotated(w) => Some(w.webhook_id.as_str()),
            Event::EndpointDisabled(w) => Some(w.webhook_id.as_str()),
            _ => None,
        }
    }

    fn fold(rows: &mut RowMap<WebhookRow>, origin: Origin<'_>, event: &Event) {
        let at = origin.at;
        match event {
            Event::WebhookCreated(w) => create(rows, &w.webhook_id, || WebhookRow {
                org_id: origin.org_id.clone(),
                url: w.url.clone(),
                events: w.events.clone(),
                description: w.description.clone(),
                enabled: w.enabled,
                options: w.delivery.clone(),
                rotated_at: None,
                created_at: at,
                updated_at: at,
            }),
            Event::WebhookUpdated(w) => {
                if let Some(row) = live(rows, &w.webhook_id) {
                    if let Some(u) = &w.url {
                        row.url = u.clone();
                    }
                    if let Some(e) = &w.events {
                        row.events = e.clone();
                    }
                    if let Some(d) = &w.description {
                        row.description = d.clone();
                    }
                    if let Some(en) = w.enabled {
                        row.enabled = en;
                    }
                    if let Some(o) = &w.delivery {
                        row.options = o.clone();
                    }
                    row.updated_at = at;
                }
            }
            Event::WebhookSecretRotated(w) => {
                if let Some(row) = live(rows, &w.webhook_id) {
                    row.rotated_at = Some(at);
                    row.updated_at = at;
                }
            }
            Event::WebhookDeleted(w) => {
                rows.insert(w.webhook_id.to_string(), None);
            }
            Event::EndpointDisabled(w) => {
                if let Some(row) = live(rows, &w.webhook_id) {
                    row.enabled = false;
                    row.updated_at = at;
                }
            }
            _ => {}
        }
    }

    fn vals(row: &WebhookRow) -> Vec<Val> {
        vec![
            Val::Text(row.org_id.to_string()),
            Val::Text(row.url.clone()),
            Val::Text(to_json(&row.events)),
            Val::Text(row.description.clone()),
            Val::Int(row.enabled as i64),
            Val::Text(to_json(&row.options)),
            Val::OptInt(row.rotated_at),
            Val::Int(row.created_at),
            Val::Int(row.updated_at),
        ]
    }

    fn parse(r: &AnyRow) -> Result<WebhookRow, StoreError> {
        Ok(WebhookRow {
            org_id: id(r, "org_id")?,
            url: r.try_get("url")?,
            events: Self::TABLE.json(r, "events")?,
            description: r.try_get("description")?,
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            options: Self::TABLE.json(r, "options")?,
            rotated_at: r.try_get("rotated_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub id: String,
    /// https URL (tcp:// or tls:// for syslog).
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    pub enabled: bool,
    /// `webhook`, `splunk-hec`, `elasticsearch`, `syslog`, `slack` or `teams`.
    #[schema(value_type = String)]
    pub kind: easm_events::EndpointKind,
    /// `standard`, `cloudevents`, `ocsf`, `ecs` or `cef`.
    #[schema(value_type = String)]
    pub format: easm_events::PayloadFormat,
    /// Custom request headers; values are write-only and shown masked.
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterView>,
    /// `concurrent` or `fifo`.
    #[schema(value_type = String)]
    pub ordering: easm_events::DeliveryOrdering,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Splunk HEC token, masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Elasticsearch API key, masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Messages per request, for the kinds that batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Milliseconds a batch waits to fill, for the kinds that batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_window: Option<u32>,
    /// When the signing secret was last rotated, if ever.
    pub secret_rotated_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FilterView {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub min_severity: Option<easm_events::Severity>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub group_ids: Vec<easm_events::GroupId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Masked: the key is write-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

impl From<DeliveryFilter> for FilterView {
    fn from(f: DeliveryFilter) -> Self {
        FilterView {
            min_severity: f.min_severity,
            group_ids: f.group_ids,
            tags: f.tags,
        }
    }
}

const WEBHOOK_COLUMNS: &str = "w.webhook_id, w.org_id, w.url, w.events, w.description, \
     w.enabled, w.options, w.rotated_at, w.created_at, w.updated_at";

fn webhook(r: &AnyRow) -> Result<WebhookView, StoreError> {
    let row = Webhooks::parse(r)?;
    Ok(view(r.try_get("webhook_id")?, row))
}

/// What the API shows of an endpoint: write-only values masked, batching as it applies.
fn view(id: String, row: WebhookRow) -> WebhookView {
    let o = row.options;
    let held = credential_names(&o);
    let masked = |name: &str| held.iter().any(|h| h == name).then(|| MASK.to_string());
    let batch = batching(&o);
    WebhookView {
        id,
        url: row.url,
        events: row.events,
        description: row.description,
        enabled: row.enabled,
        kind: o.kind,
        format: o.format,
        headers: o
            .headers
            .iter()
            .map(|h| (h.clone(), MASK.to_string()))
            .collect(),
        filter: o.filter.map(FilterView::from),
        ordering: o.ordering,
        tls: o.tls.map(|t| TlsView {
            client_key: t.client_certificate.as_ref().map(|_| MASK.to_string()),
            ca_bundle: t.ca_bundle,
            client_certificate: t.client_certificate,
        }),
        proxy: o.proxy,
        token: masked("token"),
        api_key: masked("apiKey"),
        index: o.index,
        sourcetype: o.sourcetype,
        source: o.source,
        batch_size: batch.map(|(size, _)| size),
        batch_window: batch.map(|(_, window)| window),
        secret_rotated_at: row.rotated_at.map(iso),
        created_at: iso(row.created_at),
        updated_at: iso(row.updated_at),
    }
}

/// An endpoint as fan-out and delivery need it.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub options: EndpointOptions,
}

fn endpoint(r: &AnyRow) -> Result<Endpoint, StoreError> {
    let row = Webhooks::parse(r)?;
    Ok(Endpoint {
        id: id(r, "webhook_id")?,
        url: row.url,
        events: row.events,
        enabled: row.enabled,
        options: row.options,
    })
}

impl ReadModels {
    pub async fn webhooks(
        &self,
        org_id: &OrgId,
        p: PageRequest,
    ) -> Result<Page<WebhookView>, StoreError> {
        let order = "w.created_at, w.webhook_id";
        self.org_page(
            WEBHOOK_COLUMNS,
            // The audit log webhook has its own settings API.
            "(SELECT * FROM rm_webhooks WHERE webhook_id NOT LIKE 'audit-%') w",
            "w",
            order,
            org_id,
            p,
            webhook,
        )
        .await
    }

    /// The endpoints that receive deliveries now (fan-out matches on them), by organization,
    /// for any number of them in one query per 500.
    pub async fn enabled_webhooks(
        &self,
        orgs: &[&str],
    ) -> Result<BTreeMap<String, Vec<Endpoint>>, StoreError> {
        let mut out: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        for chunk in orgs.chunks(500) {
            let sql = format!(
                "SELECT {WEBHOOK_COLUMNS} FROM rm_webhooks w \
                 WHERE w.org_id IN ({}) AND w.enabled = 1",
                easm_store::placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for org in chunk {
                q = q.bind(*org);
            }
            for r in q.fetch_all(self.db.reader()).await? {
                out.entry(r.try_get("org_id")?)
                    .or_default()
                    .push(endpoint(&r)?);
            }
        }
        Ok(out)
    }

    pub async fn webhook(
        &self,
        org_id: &OrgId,
        id: &WebhookId,
    ) -> Result<Option<WebhookView>, StoreError> {
        self.org_row(
            WEBHOOK_COLUMNS,
            "rm_webhooks w",
            "w",
            "webhook_id",
            org_id,
            id,
            webhook,
        )
        .await
    }
}

impl ReadModels {
    /// One endpoint as delivery needs it.
    pub async fn endpoint(
        &self,
        org_id: &OrgId,
        id: &WebhookId,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.org_row(
            WEBHOOK_COLUMNS,
            "rm_webhooks w",
            "w",
            "webhook_id",
            org_id,
            id,
            endpoint,
        )
        .await
    }
}
