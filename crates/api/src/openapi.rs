//! The OpenAPI document: the routes' own descriptions, and the error answers every operation can
//! give because of what runs around it (authentication, rate limits, the extractors, the body
//! limit, idempotency, the store), added here once instead of on each route.

use crate::{api_routes, public_routes, AppState};
use axum::extract::State;
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
pub(crate) async fn openapi_json(State(app): State<AppState>) -> impl IntoResponse {
    Json(document(app.webhook_allow_private).clone())
}

/// [`openapi`], built once per setting: the document served, and what the MCP tools read their
/// schemas from.
pub(crate) fn document(allow_private: bool) -> &'static Value {
    // The server's one setting that changes what it accepts: http and private webhook targets.
    static DOCS: [OnceLock<Value>; 2] = [OnceLock::new(), OnceLock::new()];
    DOCS[usize::from(allow_private)].get_or_init(|| openapi(allow_private))
}

/// The full document: public routes and authenticated ones, for a server that takes http and
/// private webhook targets (`EASM_WEBHOOK_ALLOW_PRIVATE`) or not.
pub fn openapi(allow_private: bool) -> Value {
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
    let url = http_url(allow_private);
    for (path, method, rule) in body_rules(&url) {
        narrow_body(&mut doc["paths"][path][method], rule);
    }
    let schemas = &mut doc["components"]["schemas"];
    schemas["AssetInput"]["oneOf"] = asset_values();
    schemas["AuditWebhookBody"]["properties"]["url"]["pattern"] = json!(url);
    schemas["DiscoveryRunBody"]["properties"]["domains"]["items"] =
        json!({"type": "string", "maxLength": 253, "pattern": hostname(2)});
    doc
}

const LABEL: &str = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
/// The last label starts with a letter: a name ending in a number is an address, not a host.
const TOP: &str = "[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const PORT: &str = "([1-9][0-9]{0,3}|[1-5][0-9]{4})";

/// A hostname with `labels` (a regex quantifier) before its last label.
fn host(labels: &str) -> String {
    format!("({LABEL}\\.){labels}{TOP}")
}

/// A whole value that is a hostname with at least `min` labels, as the domain trims it (white
/// space around, a trailing dot).
fn hostname(min: usize) -> String {
    format!("^\\s*{}\\.?\\s*$", host(&format!("{{{},}}", min - 1)))
}

/// An https URL, or http too where it is allowed, with an ASCII hostname (the server takes
/// Unicode ones too, as IDNA), no credentials and no fragment.
fn http_url(allow_http: bool) -> String {
    let scheme = if allow_http { "https?" } else { "https" };
    format!("^\\s*{scheme}://{}(:{PORT})?(/[^\\s#]*)?\\s*$", host("*"))
}

/// What an asset's value must be for each type, as the domain normalizes them: hostnames in
/// ASCII (the server takes Unicode too, and writes it as IDNA), addresses, networks, http(s)
/// URLs, and cloud resource names without white space.
fn asset_values() -> Value {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let ipv4 = format!("{octet}(\\.{octet}){{3}}");
    let ipv6 = "([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}";
    let of =
        |ty: &str, value: Value| json!({"properties": {"type": {"const": ty}, "value": value}});
    json!([
        of(
            "domain",
            json!({"type": "string", "maxLength": 253, "pattern": hostname(2)})
        ),
        of(
            "subdomain",
            json!({"type": "string", "maxLength": 253, "pattern": hostname(3)})
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
            json!({"type": "string", "maxLength": 2048, "pattern": http_url(true)})
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
fn body_rules(url: &str) -> Vec<(&'static str, &'static str, Value)> {
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
        ("/api/webhooks", "post", new_endpoint(url)),
        ("/api/webhooks/{id}", "patch", changed_endpoint(url)),
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

/// Text without control characters (tabs neither), `max` characters at most.
fn printable(min: usize, max: usize) -> Value {
    json!({"type": "string", "minLength": min, "maxLength": max,
           "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$"})
}

/// `schema`, or `null`.
fn nullable(schema: &mut Value) {
    if schema["type"] != "null"
        && !schema["anyOf"]
            .as_array()
            .is_some_and(|a| a.contains(&json!({"type": "null"})))
    {
        *schema = json!({"anyOf": [{"type": "null"}, schema.take()]});
    }
}

/// PEM text of `format`: a name of this API's own (`x-pem-certificates`, `x-pem-private-key`)
/// that generators of test data can be given, since no pattern says that PEM decodes.
fn pem(format: &str) -> Value {
    json!({"anyOf": [{"type": "null"}, {"type": "string", "format": format, "maxLength": 65536}]})
}

/// When `field` is given (not `null`), `other` is too.
fn given_with(field: &str, other: &str) -> Value {
    json!({
        "if": {"required": [field], "properties": {field: {"type": "string"}}},
        "then": {"required": [other], "properties": {other: {"type": "string"}}},
    })
}

/// A header name the delivery does not write itself (any case): a token, not `webhook-*`.
fn header_name() -> Value {
    let owned: Vec<String> = easm_domain::OWNED_HEADERS
        .iter()
        .map(|h| any_case(h))
        .collect();
    json!({"pattern": format!(
        "^(?!({})$)(?!{})[!#$%&'*+.^_`|~0-9A-Za-z-]{{1,100}}$",
        owned.join("|"),
        any_case("webhook-")
    )})
}

/// A pattern matching `name` in any case (patterns have no flags).
fn any_case(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'a'..='z' => format!("[{}{c}]", c.to_ascii_uppercase()),
            c => regex_literal(c),
        })
        .collect()
}

fn regex_literal(c: char) -> String {
    if "\\.+*?()|[]{}^$-".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// What any endpoint's fields must be, whatever its kind.
fn endpoint_fields(http: &str) -> Value {
    let families: std::collections::BTreeSet<String> = easm_events::SUBSCRIBABLE
        .iter()
        .filter_map(|t| t.split_once('.').map(|(f, _)| format!("{f}.*")))
        .collect();
    let mut filters: Vec<Value> = easm_events::SUBSCRIBABLE.iter().map(|t| json!(t)).collect();
    filters.extend(families.into_iter().map(Value::from));
    filters.push(json!("*"));
    json!({
        "events": {"type": "array", "minItems": 1, "maxItems": 50, "items": {"anyOf": [
            {"enum": filters},
            {"type": "string", "pattern": "^audit\\.[a-z_.]{1,64}$"},
        ]}},
        "description": {"anyOf": [printable(0, 500), {"type": "null"}]},
        "headers": {"anyOf": [{"type": "null"}, {
            "type": "object", "maxProperties": 20, "propertyNames": header_name(),
            "additionalProperties": {"type": "string", "pattern": "^[\\t -~]{1,4096}$"},
        }]},
        "proxy": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": http}]},
        "filter": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {
            "groupIds": {"type": "array", "maxItems": 100, "items": printable(1, 100)},
            "tags": {"type": "array", "maxItems": 100, "items": printable(1, 64)},
        }}]},
        "tls": {"anyOf": [{"type": "null"}, {
            "type": "object",
            "properties": {
                "caBundle": pem("x-pem-certificates"),
                "clientCertificate": pem("x-pem-certificates"),
                "clientKey": pem("x-pem-private-key"),
            },
            // A client certificate goes with its key (`null` is none).
            "allOf": [
                given_with("clientCertificate", "clientKey"),
                given_with("clientKey", "clientCertificate"),
            ],
        }]},
    })
}

/// A change of an endpoint: the fields given fit one kind of endpoint (what the kind needs may
/// be held already, so nothing is required). One that fits another kind than the endpoint's
/// conflicts with it (409).
fn changed_endpoint(http: &str) -> Value {
    let mut rule = new_endpoint(http);
    let mut fields = rule["properties"].take();
    fields["url"] = json!({"anyOf": [{"type": "null"}, {"type": "string"}]});
    fields["events"] = json!({"anyOf": [{"type": "null"}, fields["events"].take()]});
    let mut kinds = rule["oneOf"].take();
    for kind in kinds.as_array_mut().into_iter().flatten() {
        // `null` keeps a write-only value; an index Elasticsearch cannot go without.
        let elastic = kind["properties"]["kind"]["enum"] == json!(["elasticsearch"]);
        for (name, schema) in kind["properties"].as_object_mut().into_iter().flatten() {
            if !(elastic && name == "index") && name != "kind" && name != "url" {
                nullable(schema);
            }
        }
        kind["required"] = json!([]);
        // `null` keeps the kind, whichever it is.
        if let Some(kinds) = kind["properties"]["kind"]["enum"].as_array_mut() {
            if !kinds.contains(&Value::Null) {
                kinds.push(Value::Null);
            }
        }
        // The url is given or kept: only a given one must be of the kind's form.
        let url = kind["properties"]["url"].take();
        kind["properties"]["url"] = json!({"anyOf": [{"type": "null"}, url]});
    }
    json!({"properties": fields, "anyOf": kinds})
}

/// A new endpoint: `url` and `events` always, and what each kind takes or needs (the token of a
/// Splunk HEC, the API key and index of Elasticsearch, batching for the kinds that batch, a
/// syslog `tcp://` or `tls://` address with its port).
fn new_endpoint(http: &str) -> Value {
    let nothing = |fields: &[&str]| -> Value {
        fields
            .iter()
            .map(|f| (f.to_string(), json!({"type": "null"})))
            .collect::<serde_json::Map<String, Value>>()
            .into()
    };
    let syslog_at = |scheme: &str| format!("^\\s*{scheme}://{}:{PORT}/?\\s*$", host("*"));
    let (syslog_tcp, syslog_tls) = (syslog_at("tcp"), syslog_at("tls"));
    // A write-only value: the mask that reads show means "keep", which a new endpoint cannot.
    let secret = json!({"type": "string", "pattern": "^(?!\\*{8}$)[!-~]{1,1024}$"});
    let es_index = json!({"type": "string", "maxLength": 255,
        "pattern": "^(?![-_+])(?!\\.\\.?$)[^A-Z\\s\\\\/*?\"<>|,#:]+$"});
    let kind = |names: &[&str], url: &str, mut properties: Value, required: &[&str]| {
        let mut kinds: Vec<Value> = names.iter().map(|k| json!(k)).collect();
        if names.contains(&"webhook") {
            kinds.push(Value::Null);
        }
        // A setting not required may be `null`: none.
        for (name, schema) in properties.as_object_mut().into_iter().flatten() {
            if !required.contains(&name.as_str()) {
                nullable(schema);
            }
        }
        properties["kind"] = json!({"enum": kinds});
        properties["url"] = json!({"type": "string", "pattern": url});
        json!({"properties": properties, "required": required})
    };
    let http_only = ["token", "apiKey", "index", "sourcetype", "source"];
    let mut webhook = nothing(&http_only);
    webhook["batchSize"] = json!({"type": "null"});
    webhook["batchWindow"] = json!({"type": "null"});
    webhook["format"] = json!({"enum": ["standard", "cloudevents", "ocsf", "ecs", null]});
    let mut chat = webhook.clone();
    chat["format"] = json!({"enum": ["standard", null]});
    // These kinds send the token or API key as `Authorization`.
    let no_authorization = json!({"anyOf": [{"type": "null"}, {"type": "object",
        "propertyNames": {"not": {"pattern": format!("^{}$", any_case("authorization"))}}}]});
    let mut splunk = nothing(&["apiKey"]);
    splunk["headers"] = no_authorization.clone();
    splunk["token"] = secret.clone();
    splunk["index"] = printable(1, 255);
    splunk["sourcetype"] = printable(1, 255);
    splunk["source"] = printable(1, 255);
    splunk["format"] = json!({"enum": ["standard", "cloudevents", "ocsf", "ecs", null]});
    let mut elastic = nothing(&["token", "sourcetype", "source"]);
    elastic["headers"] = no_authorization;
    elastic["apiKey"] = secret;
    elastic["index"] = es_index;
    elastic["format"] = json!({"enum": ["ecs", null]});
    let mut syslog = nothing(&["token", "apiKey", "index", "sourcetype", "source", "proxy"]);
    syslog["format"] = json!({"enum": ["cef", "standard", "cloudevents", "ocsf", "ecs", null]});
    syslog["headers"] =
        json!({"anyOf": [{"type": "null"}, {"type": "object", "maxProperties": 0}]});
    // TLS settings need a tls:// address.
    let mut syslog_plain = syslog.clone();
    let none = json!({"type": "null"});
    syslog_plain["tls"] = json!({"anyOf": [none, {"type": "object", "properties": {
        "caBundle": none, "clientCertificate": none, "clientKey": none,
    }}]});
    let kinds = json!([
        kind(&["webhook"], http, webhook, &[]),
        kind(&["slack", "teams"], http, chat, &["kind"]),
        kind(&["splunk-hec"], http, splunk, &["kind", "token"]),
        kind(
            &["elasticsearch"],
            http,
            elastic,
            &["kind", "apiKey", "index"]
        ),
        kind(&["syslog"], &syslog_tcp, syslog_plain, &["kind"]),
        kind(&["syslog"], &syslog_tls, syslog, &["kind"]),
    ]);
    let mut rule = json!({"required": ["url", "events"], "oneOf": kinds});
    rule["properties"] = endpoint_fields(http);
    rule
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
