//! Values the contract spells as one of a fixed set of lowercase names (severities, triage
//! statuses, roles, plans): one enum each, shared by the events, the domain and the read models, written and
//! read by the same names.

/// Declares such an enum with its names, `ALL`, `NAMES`, `as_str`, `parse` and serde as the name.
macro_rules! named {
    ($(#[$doc:meta])* $name:ident { $($(#[$attr:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$attr])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// The names, in the order of `ALL`.
            pub const NAMES: &'static [&'static str] = &[$($text,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{s} is not one of {}",
                        $name::NAMES.join(", ")
                    ))
                })
            }
        }
    };
}

named! {
    /// How bad a finding is, worst first.
    Severity { Critical = "critical", High = "high", Medium = "medium", Low = "low", Info = "info" }
}

named! {
    /// Where a finding stands in triage.
    FindingStatus {
        Open = "open",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
        Ignored = "ignored",
    }
}

/// A finding starts open.
impl Default for FindingStatus {
    fn default() -> Self {
        FindingStatus::Open
    }
}

impl FindingStatus {
    /// Open or acknowledged: counted in risk, resolved by a scan that no longer sees it.
    pub fn unresolved(self) -> bool {
        matches!(self, FindingStatus::Open | FindingStatus::Acknowledged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(*s));
        }
        assert_eq!(
            Severity::NAMES,
            ["critical", "high", "medium", "low", "info"]
        );
        let json = serde_json::to_string(&FindingStatus::Acknowledged).unwrap();
        assert_eq!(json, "\"acknowledged\"");
        assert_eq!(
            serde_json::from_str::<FindingStatus>(&json).unwrap(),
            FindingStatus::Acknowledged
        );
        let bad = serde_json::from_str::<FindingStatus>("\"closed\"").unwrap_err();
        assert!(bad
            .to_string()
            .contains("open, acknowledged, resolved, ignored"));
        assert!(Severity::Critical < Severity::Info, "worst first");
    }
}

named! {
    /// A member's or key's role. Ordered: each holds every permission of the ones below it
    /// (the permissions are the domain's).
    Role { Viewer = "viewer", Analyst = "analyst", Admin = "admin", Owner = "owner" }
}

named! {
    /// Which surface a key opens: the REST API (`ag_sk_` keys) or the MCP server (`mcp_sk_`
    /// keys). Neither opens the other. Keys written before MCP existed have no kind: REST.
    #[derive(Default)]
    KeyKind {
        #[default]
        Rest = "rest",
        Mcp = "mcp",
    }
}

impl KeyKind {
    /// The prefix of this kind's secrets.
    pub fn secret_prefix(self) -> &'static str {
        match self {
            KeyKind::Rest => "ag_sk_",
            KeyKind::Mcp => "mcp_sk_",
        }
    }

    pub fn is_rest(&self) -> bool {
        *self == KeyKind::Rest
    }
}

named! {
    /// An organization's plan (its limits are the domain's).
    Plan { Free = "free", Pro = "pro", Enterprise = "enterprise" }
}

named! {
    /// What a recurring schedule of scans is: a monitor (its scans raise alerts when the asset
    /// changes, and a domain's monitor runs discovery too) or a plain scan schedule. Monitors
    /// are the default: events written before schedules existed have no kind.
    #[derive(Default)]
    MonitorKind {
        #[default]
        Monitor = "monitor",
        Schedule = "schedule",
    }
}

impl MonitorKind {
    pub fn is_monitor(&self) -> bool {
        *self == MonitorKind::Monitor
    }
}

named! {
    /// What receives an endpoint's messages: a webhook receiver (signed JSON over HTTPS) or a
    /// destination spoken to natively in its own protocol.
    #[derive(Default)]
    EndpointKind {
        #[default]
        Webhook = "webhook",
        SplunkHec = "splunk-hec",
        Elasticsearch = "elasticsearch",
        Syslog = "syslog",
        Slack = "slack",
        Teams = "teams",
    }
}

impl EndpointKind {
    /// Kinds whose messages travel together, several to a request or a write.
    pub fn batches(self) -> bool {
        matches!(
            self,
            EndpointKind::SplunkHec | EndpointKind::Elasticsearch | EndpointKind::Syslog
        )
    }
}

named! {
    /// The shape of a message's body.
    #[derive(Default)]
    PayloadFormat {
        #[default]
        Standard = "standard",
        CloudEvents = "cloudevents",
        Ocsf = "ocsf",
        Ecs = "ecs",
        Cef = "cef",
    }
}

named! {
    /// Whether an endpoint's messages may overtake one another.
    #[derive(Default)]
    DeliveryOrdering {
        #[default]
        Concurrent = "concurrent",
        Fifo = "fifo",
    }
}
