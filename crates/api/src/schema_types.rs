//! How the OpenAPI document states values the domain parses itself (its types carry no schema):
//! the enumerations a request may name, each with the domain's own list.

use utoipa::openapi::schema::{
    AnyOfBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

/// A schema-only type: a string that is one of `$values`.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $values:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some($values.iter().copied()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

string_enum!(
    /// A member's or key's role.
    RoleName,
    easm_events::Role::NAMES
);

string_enum!(
    /// Where a finding stands in triage.
    FindingStatusName,
    easm_events::FindingStatus::NAMES
);

string_enum!(
    /// How bad a finding or an alert is.
    SeverityName,
    easm_events::Severity::NAMES
);

string_enum!(
    /// The ports a scan probes: the top 20, 100 or 1000.
    ProfileName,
    easm_domain::PROFILES
);

string_enum!(
    /// What a scan schedule covers.
    ScheduleTypeName,
    ["asset", "group"]
);

string_enum!(
    /// What receives an endpoint's messages.
    EndpointKindName,
    easm_events::EndpointKind::NAMES
);

string_enum!(
    /// The shape of an endpoint's messages.
    PayloadFormatName,
    easm_events::PayloadFormat::NAMES
);

string_enum!(
    /// Whether an endpoint's messages may overtake one another.
    OrderingName,
    easm_events::DeliveryOrdering::NAMES
);

string_enum!(
    /// What an asset is.
    AssetTypeName,
    ["domain", "subdomain", "ip", "cidr", "url", "cloud_resource"]
);

string_enum!(
    /// How much an asset matters.
    CriticalityName,
    ["low", "medium", "high", "critical"]
);

string_enum!(
    /// Where a scan or discovery job stands.
    JobStatusName,
    ["queued", "running", "completed", "failed", "cancelled"]
);

string_enum!(
    /// Where an alert stands.
    AlertStatusName,
    ["open", "acknowledged", "resolved"]
);

string_enum!(
    /// Where a delivery stands.
    DeliveryStatusName,
    ["pending", "succeeded", "failed", "filtered"]
);

string_enum!(
    /// Where a change came from.
    AuditCategoryName,
    ["api", "cli", "system", "mcp"]
);

string_enum!(
    /// Whether a request was carried out.
    AuditOutcomeName,
    ["success", "denied"]
);

string_enum!(
    /// How findings are ordered.
    FindingSortName,
    ["lastDetected", "firstDetected", "severity"]
);

string_enum!(
    /// What a findings export is written in.
    ExportFormatName,
    ["csv", "json", "ndjson", "sarif"]
);

/// A TCP port.
pub struct Port;

impl utoipa::PartialSchema for Port {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(65535))
            .into()
    }
}

impl utoipa::ToSchema for Port {}

/// A moment as the API reads one: an RFC 3339 time, or a date meaning its start UTC.
pub struct Moment;

impl utoipa::PartialSchema for Moment {
    fn schema() -> RefOr<Schema> {
        let as_string = |format: KnownFormat| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        AnyOfBuilder::new()
            .item(as_string(KnownFormat::DateTime))
            .item(as_string(KnownFormat::Date))
            .into()
    }
}

impl utoipa::ToSchema for Moment {}

/// Text people read (names, tags): not blank, no control characters.
const READABLE: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// An asset tag.
pub struct Tag;

impl utoipa::PartialSchema for Tag {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(easm_domain::TagList::MAX_TAG_LEN))
            .pattern(Some(READABLE))
            .into()
    }
}

impl utoipa::ToSchema for Tag {}

/// A batch's wait: milliseconds, or a duration such as `200ms` or `1s`, at most 10 s.
pub struct BatchWindowValue;

impl utoipa::PartialSchema for BatchWindowValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(10_000)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^([0-9]{1,4}ms|10000ms|[0-9]s|10s)$")),
            )
            .into()
    }
}

impl utoipa::ToSchema for BatchWindowValue {}

/// An id in a body: a string, or a number for clients whose ids are numeric (it is read as its
/// decimal text).
pub struct IdValue;

impl utoipa::PartialSchema for IdValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(i64::MAX)),
            )
            .into()
    }
}

impl utoipa::ToSchema for IdValue {}
