//! The OpenAPI document: the routes' own descriptions, and the error answers every operation can
//! give because of what runs around it (authentication, rate limits, the extractors, the body
//! limit, idempotency, the store), added here once instead of on each route.

use crate::{api_routes, public_routes, AppState};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

#[derive(OpenApi)]
#[openapi(
    info(title = "easm API", description = "External Attack Surface Management: assets, discovery, scans and findings, monitors and alerts, webhooks and SIEM delivery, over an append-only, hash-chained event log."),
    modifiers(&Security),
    components(schemas(
        crate::schema_types::AlertStatusName, crate::schema_types::AuditCategoryName,
        crate::schema_types::AuditOutcomeName, crate::schema_types::DeliveryStatusName,
        crate::schema_types::ExportFormatName, crate::schema_types::FindingSortName,
        crate::schema_types::JobStatusName, crate::schema_types::Moment,
        crate::schema_types::ProfileName, crate::schema_types::SeverityName,
        crate::schema_types::FindingStatusName, crate::schema_types::AssetTypeName,
        crate::schema_types::CriticalityName,
    )),
    tags((name = "assets"), (name = "groups"), (name = "keys"), (name = "organization"), (name = "scans"), (name = "findings"), (name = "discovery"), (name = "monitors"), (name = "webhooks"), (name = "health"))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/api/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(openapi).clone())
}

/// The full document: public routes and authenticated ones.
pub fn openapi() -> Value {
    let (_, mut doc) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .merge(public_routes())
        .merge(api_routes())
        .split_for_parts();
    for item in doc.paths.paths.values_mut() {
        let methods = [
            (false, &mut item.get),
            (true, &mut item.post),
            (true, &mut item.put),
            (true, &mut item.patch),
            (true, &mut item.delete),
        ];
        for (changes, op) in methods {
            if let Some(op) = op.as_mut() {
                add_error_answers(op, changes);
            }
        }
    }
    let mut doc = serde_json::to_value(doc).expect("the document serializes");
    for (path, method, rule) in body_rules() {
        narrow_body(&mut doc["paths"][path][method], rule);
    }
    let schemas = &mut doc["components"]["schemas"];
    schemas["AssetInput"]["oneOf"] = asset_values();
    schemas["DiscoveryRunBody"]["properties"]["domains"]["items"] =
        json!({"type": "string", "maxLength": 253, "pattern": DOMAIN});
    doc
}

const LABEL: &str = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/// A hostname of two labels or more whose last is not a number (an address is no domain).
const DOMAIN: &str = concat!(
    r"^\s*([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+",
    r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?\s*$"
);

/// What an asset's value must be for each type, as the domain normalizes them: hostnames in
/// ASCII (the server takes Unicode too, and writes it as IDNA), addresses, networks, http(s)
/// URLs, and cloud resource names without white space.
fn asset_values() -> Value {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let ipv4 = format!("{octet}(\\.{octet}){{3}}");
    let ipv6 = "([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}";
    let of =
        |ty: &str, value: Value| json!({"properties": {"type": {"const": ty}, "value": value}});
    let host = format!("({LABEL}\\.)*[A-Za-z]([A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?");
    json!([
        of(
            "domain",
            json!({"type": "string", "maxLength": 253, "pattern": DOMAIN})
        ),
        of(
            "subdomain",
            json!({"type": "string", "maxLength": 253, "pattern": format!(
                "^\\s*({LABEL}\\.){{2,}}[A-Za-z]([A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\\.?\\s*$"
            )})
        ),
        of(
            "ip",
            json!({"anyOf": [
                {"type": "string", "format": "ipv4"},
                {"type": "string", "format": "ipv6"},
            ]})
        ),
        of(
            "cidr",
            json!({"type": "string", "pattern": format!(
                "^\\s*({ipv4}/(3[0-2]|[12]?[0-9])|{ipv6}/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))\\s*$"
            )})
        ),
        of(
            "url",
            json!({"type": "string", "maxLength": 2048, "pattern": format!(
                "^\\s*https?://{host}(:([1-9][0-9]{{0,3}}|[1-5][0-9]{{4}}))?(/[^\\s#]*)?\\s*$"
            )})
        ),
        of(
            "cloud_resource",
            json!({"type": "string", "pattern":
            "^\\s*[^\\s\\u0000-\\u001F\\u007F-\\u009F]{1,512}\\s*$"})
        ),
    ])
}

/// What bodies whose one type serves creating and changing must hold, or must not, beyond
/// that type, for each operation; ids are given there (`null` is no id).
fn body_rules() -> Vec<(&'static str, &'static str, Value)> {
    let id = json!({"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": i64::MAX}]});
    let exactly_one = |a: &str, b: &str| {
        json!({"oneOf": [
            {"required": [a], "properties": {a: id}, "not": {"required": [b]}},
            {"required": [b], "properties": {b: id}, "not": {"required": [a]}},
        ]})
    };
    let none_of = |fields: &[&str]| json!({"not": {"anyOf": fields.iter().map(|f| json!({"required": [f]})).collect::<Vec<_>>()}});
    let mut schedule = exactly_one("assetId", "groupId");
    schedule["oneOf"][0]["properties"]["scheduleType"] = json!({"const": "asset"});
    schedule["oneOf"][1]["properties"]["scheduleType"] = json!({"const": "group"});
    vec![
        (
            "/api/webhooks",
            "post",
            json!({"required": ["url", "events"],
                   "properties": {"url": {"type": "string"}, "events": {"type": "array"}}}),
        ),
        (
            "/api/scan-jobs",
            "post",
            json!({
                "anyOf": [
                    {"required": ["asset_id"], "properties": {"asset_id": id}},
                    {"required": ["assetId"], "properties": {"assetId": id}},
                ],
                "required": ["profile"],
                "properties": {"profile": {"type": "string"}},
            }),
        ),
        ("/api/monitors", "post", exactly_one("assetId", "groupId")),
        (
            "/api/monitors/{id}",
            "patch",
            none_of(&["assetId", "groupId", "ports"]),
        ),
        ("/api/scan-schedules", "post", schedule),
        (
            "/api/scan-schedules/{id}",
            "patch",
            none_of(&["scheduleType", "assetId", "groupId"]),
        ),
    ]
}

/// The operation's JSON body must hold `rule` as well as its type.
fn narrow_body(op: &mut Value, rule: Value) {
    let schema = &mut op["requestBody"]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "a body rule for a body that is not there"
    );
    *schema = json!({"allOf": [schema.take(), rule]});
}

/// The answers the layers around a handler give, where the handler's own description has not
/// named them already.
fn add_error_answers(op: &mut Operation, changes: bool) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let in_path = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_input = !params.is_empty() || op.request_body.is_some();
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut answers: Vec<(&str, &str)> = vec![];
    if has_input {
        answers.push((
            "400",
            "The request is not valid: `field` names what is wrong.",
        ));
    }
    if in_path {
        answers.push(("404", "Nothing with that id in the caller's organization."));
    }
    if op.request_body.is_some() {
        answers.push(("413", "The body is larger than the API takes."));
    }
    if secured {
        answers.push((
            "401",
            "No API key or bearer token, or one that is not valid.",
        ));
        answers.push(("403", "The caller's role does not allow this."));
        answers.push((
            "429",
            "Too many requests for the key's plan; `Retry-After` says when to try again.",
        ));
        answers.push((
            "503",
            "The database is briefly unavailable; `Retry-After` says when to try again.",
        ));
        if changes {
            answers.push((
                "409",
                "A conflict with the current state, a request with the same `Idempotency-Key` \
                 still under way, or concurrent changes that kept winning.",
            ));
            answers.push((
                "422",
                "The `Idempotency-Key` was used before with a different request.",
            ));
        }
    }
    for (status, description) in answers {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(error_answer(description)));
    }
}

fn error_answer(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
}
