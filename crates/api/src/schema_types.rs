//! How the OpenAPI document states values the domain parses itself (its types carry no schema):
//! the enumerations a request may name, each with the domain's own list.

use utoipa::openapi::schema::{
    AnyOfBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

/// A schema-only type: a unit struct whose schema is `$schema`.
macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident, $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema.into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// A schema-only type: a string that is one of `$values`.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $values:expr) => {
        schema_type!(
            $(#[$doc])*
            $name,
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some($values.iter().copied()))
        );
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

schema_type!(
    /// A TCP port.
    Port,
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(65535))
);

schema_type!(
    /// A moment as the API reads one: an RFC 3339 time, or a date meaning its start UTC.
    Moment,
    {
        let as_string = |format: KnownFormat| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(format)))
        };
        AnyOfBuilder::new()
            .item(as_string(KnownFormat::DateTime))
            .item(as_string(KnownFormat::Date))
    }
);

/// Text people read (names, tags): not blank, no control characters.
const READABLE: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$";

schema_type!(
    /// An asset tag.
    Tag,
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(easm_domain::TagList::MAX_TAG_LEN))
        .pattern(Some(READABLE))
);

schema_type!(
    /// A batch's wait: milliseconds, or a duration such as `200ms` or `1s`, at most 10 s.
    BatchWindowValue,
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
);

schema_type!(
    /// An id in a body: a string, or a number for clients whose ids are numeric (it is read as its
    /// decimal text).
    IdValue,
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(i64::MAX)),
        )
);
