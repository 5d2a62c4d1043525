//! Every event the code can emit validates against its published JSON Schema in `events/schemas`,
//! checked by a complete JSON Schema implementation (the `jsonschema` crate), so that patterns,
//! ranges and formats the schemas state hold too.

use crate::catalogue::*;
use crate::{FindingStatus, KeyKind, Plan, Role};
use serde_json::Value;

fn samples() -> Vec<Event> {
    vec![
        Event::OrgCreated(OrgCreated {
            org_id: "o".into(),
            name: "Acme".into(),
            plan: Plan::Free,
        }),
        Event::ApiKeyCreated(ApiKeyCreated {
            key_id: "k".into(),
            name: "ci".into(),
            role: Role::Analyst,
            key_hash: "ab".repeat(32),
            prefix: "ag_sk_abcdef".into(),
            user_id: None,
            kind: KeyKind::Rest,
            allow_writes: false,
        }),
        Event::ApiKeyCreated(ApiKeyCreated {
            key_id: "k2".into(),
            name: "laptop".into(),
            role: Role::Viewer,
            key_hash: "cd".repeat(32),
            prefix: "ag_sk_ghijkl".into(),
            user_id: Some("u".into()),
            kind: KeyKind::Rest,
            allow_writes: false,
        }),
        Event::ApiKeyCreated(ApiKeyCreated {
            key_id: "k3".into(),
            name: "claude".into(),
            role: Role::Analyst,
            key_hash: "ef".repeat(32),
            prefix: "mcp_sk_mnopq".into(),
            user_id: Some("u".into()),
            kind: KeyKind::Mcp,
            allow_writes: true,
        }),
        Event::ApiKeyRevoked(ApiKeyRevoked { key_id: "k".into() }),
        Event::UserAdded(UserAdded {
            user_id: "u".into(),
            email: "ana@example.com".into(),
            name: "Ana".into(),
            role: Role::Analyst,
        }),
        Event::UserRoleChanged(UserRoleChanged {
            user_id: "u".into(),
            role: Role::Admin,
            previous_role: Role::Analyst,
        }),
        Event::UserRemoved(UserRemoved {
            user_id: "u".into(),
            email: "ana@example.com".into(),
        }),
        Event::GroupCreated(GroupCreated {
            group_id: "g".into(),
            name: "Prod".into(),
        }),
        Event::GroupRenamed(GroupRenamed {
            group_id: "g".into(),
            name: "P".into(),
            previous_name: "Prod".into(),
        }),
        Event::GroupDeleted(GroupDeleted {
            group_id: "g".into(),
        }),
        Event::AssetAdded(AssetAdded {
            asset_id: "a".into(),
            group_id: "g".into(),
            value: "example.com".into(),
            asset_type: "domain".into(),
            tags: vec!["prod".into()],
            criticality: "high".into(),
            discovery_job_id: None,
        }),
        Event::AssetUpdated(AssetUpdated {
            asset_id: "a".into(),
            group_id: Some("g2".into()),
            tags: Some(vec![]),
            criticality: Some("low".into()),
        }),
        Event::AssetUpdated(AssetUpdated {
            asset_id: "a".into(),
            group_id: None,
            tags: None,
            criticality: Some("critical".into()),
        }),
        Event::AssetRemoved(AssetRemoved {
            asset_id: "a".into(),
            value: "example.com".into(),
            group_id: "g".into(),
        }),
        Event::WebhookCreated(WebhookCreated {
            webhook_id: "w".into(),
            url: "https://siem.example.com/in".into(),
            events: vec!["finding.*".into(), "scan.completed".into()],
            description: "".into(),
            enabled: true,
            delivery: EndpointOptions::default(),
        }),
        Event::WebhookCreated(WebhookCreated {
            webhook_id: "w2".into(),
            url: "https://hec.example.com:8088".into(),
            events: vec!["finding.*".into()],
            description: "".into(),
            enabled: true,
            delivery: EndpointOptions {
                kind: crate::EndpointKind::SplunkHec,
                format: crate::PayloadFormat::Ocsf,
                headers: vec!["X-Tenant".into()],
                filter: Some(DeliveryFilter {
                    min_severity: Some(crate::Severity::High),
                    group_ids: vec!["g".into()],
                    tags: vec!["prod".into()],
                }),
                ordering: crate::DeliveryOrdering::Fifo,
                tls: Some(EndpointTls {
                    ca_bundle: Some("-----BEGIN CERTIFICATE-----".into()),
                    client_certificate: None,
                }),
                proxy: Some("http://proxy.example.com:3128".into()),
                index: Some("easm".into()),
                sourcetype: None,
                source: Some("easm".into()),
                batch_size: Some(500),
                batch_window_ms: Some(100),
            },
        }),
        Event::WebhookUpdated(WebhookUpdated {
            webhook_id: "w".into(),
            url: None,
            events: None,
            description: Some("SIEM".into()),
            enabled: Some(false),
            delivery: None,
            credentials: vec![],
        }),
        Event::WebhookUpdated(WebhookUpdated {
            webhook_id: "w".into(),
            url: None,
            events: None,
            description: None,
            enabled: None,
            delivery: Some(EndpointOptions {
                format: crate::PayloadFormat::CloudEvents,
                ..Default::default()
            }),
            credentials: vec!["headers.Authorization".into()],
        }),
        Event::WebhookDeleted(WebhookDeleted {
            webhook_id: "w".into(),
        }),
        Event::WebhookSecretRotated(WebhookSecretRotated {
            webhook_id: "w".into(),
            previous_valid_until: "2026-11-23T10:00:00.000000Z".into(),
        }),
        Event::RiskChanged(RiskChanged {
            asset_id: "a".into(),
            score: 48,
            grade: "D".into(),
            previous_score: 8,
            previous_grade: "B".into(),
            breakdown: SeverityCounts {
                critical: 1,
                medium: 1,
                ..Default::default()
            },
        }),
        Event::AccessDenied(AccessDenied {
            key_id: "k".into(),
            key_prefix: "ag_sk_abcdef".into(),
            method: "DELETE".into(),
            path: "/api/groups/g".into(),
            status: 403,
            reason: "the viewer role may not do this".into(),
        }),
        Event::McpToolCalled(McpToolCalled {
            key_id: "k3".into(),
            tool: "list_findings".into(),
            arguments: serde_json::json!({"severity": "critical"}),
            outcome: "success".into(),
            error: None,
        }),
        Event::McpToolCalled(McpToolCalled {
            key_id: "k3".into(),
            tool: "get_finding".into(),
            arguments: serde_json::json!({"id": "f"}),
            outcome: "error".into(),
            error: Some("no finding f".into()),
        }),
        Event::EndpointDisabled(EndpointDisabled {
            webhook_id: "w".into(),
            failing_since: "2026-11-18T10:00:00.000000Z".into(),
            reason: "every attempt failed for 5 days".into(),
        }),
        Event::ScanRequested(ScanRequested {
            scan_job_id: "s".into(),
            asset_id: "a".into(),
            profile: "quick".into(),
            ports: Some(vec![8443, 8080]),
            rerun_of: None,
        }),
        Event::ScanStarted(ScanStarted {
            scan_job_id: "s".into(),
            worker_id: "w1".into(),
            attempt: 1,
        }),
        Event::ScanProgressed(ScanProgressed {
            scan_job_id: "s".into(),
            progress: 40,
            stage: "tls".into(),
        }),
        Event::ScanCompleted(ScanCompleted {
            scan_job_id: "s".into(),
            asset_id: "a".into(),
            profile: "quick".into(),
            counts: SeverityCounts {
                high: 1,
                info: 3,
                ..Default::default()
            },
            observed: Observed {
                addresses: vec!["127.0.0.1".into()],
                cnames: vec![],
                ports_scanned: Some(20),
                services: vec![ServiceSeen {
                    port: 443,
                    service: "https".into(),
                    tls: true,
                    detail: Some("HTTP 200".into()),
                }],
            },
        }),
        Event::ScanFailed(ScanFailed {
            scan_job_id: "s".into(),
            asset_id: "a".into(),
            reason: "10.0.0.1 is not a public address".into(),
        }),
        Event::ScanCancelled(ScanCancelled {
            scan_job_id: "s".into(),
        }),
        Event::ScanDeleted(ScanDeleted {
            scan_job_id: "s".into(),
        }),
        Event::FindingNew(FindingNew {
            finding_id: "f".into(),
            asset_id: "a".into(),
            scan_job_id: Some("s".into()),
            discovery_job_id: None,
            profile: Some("quick".into()),
            detection: Box::new(Detection {
                template_id: "tls.expired-cert".into(),
                title: "Expired TLS certificate".into(),
                severity: "high".into(),
                category: "tls".into(),
                description: "The certificate expired.".into(),
                evidence: "notAfter=2026-01-01T00:00:00Z".into(),
                remediation: "Renew the certificate.".into(),
                references: vec!["https://example.com/tls".into()],
                cve: None,
                cwe: Some("CWE-298".into()),
                cvss_score: Some(7.5),
                matched_at: "example.com:443".into(),
                matcher_name: "".into(),
                source: "easm".into(),
            }),
        }),
        Event::FindingRedetected(FindingRedetected {
            finding_id: "f".into(),
            scan_job_id: None,
            discovery_job_id: Some("d".into()),
            profile: Some("discovery".into()),
            evidence: "notAfter=2026-01-01T00:00:00Z".into(),
        }),
        Event::FindingReopened(FindingReopened {
            finding_id: "f".into(),
            scan_job_id: Some("s3".into()),
            discovery_job_id: None,
            notes: None,
        }),
        Event::FindingResolved(FindingResolved {
            finding_id: "f".into(),
            from: FindingStatus::Acknowledged,
            scan_job_id: None,
            discovery_job_id: Some("d".into()),
            notes: Some("renewed".into()),
        }),
        Event::FindingStatusChanged(FindingStatusChanged {
            finding_id: "f".into(),
            from: FindingStatus::Open,
            to: FindingStatus::Ignored,
            notes: None,
        }),
        Event::FindingUpdated(FindingUpdated {
            finding_id: "f".into(),
            assignee: Some("alice@example.com".into()),
            notes: None,
        }),
        Event::MonitorCreated(MonitorCreated {
            monitor_id: "m".into(),
            asset_id: None,
            group_id: Some("g".into()),
            frequency_hours: 24,
            profile: "quick".into(),
            ports: Some(vec![443]),
            enabled: true,
            kind: crate::MonitorKind::Schedule,
        }),
        Event::MonitorUpdated(MonitorUpdated {
            monitor_id: "m".into(),
            frequency_hours: Some(6),
            profile: None,
            enabled: Some(false),
        }),
        Event::MonitorDeleted(MonitorDeleted {
            monitor_id: "m".into(),
        }),
        Event::MonitorTriggered(MonitorTriggered {
            monitor_id: "m".into(),
            ran_at: "2026-11-30T10:00:00.000000Z".into(),
            manual: false,
            scan_job_ids: vec!["s".into()],
            discovery_job_ids: vec!["d".into()],
            skipped: vec![SkippedAsset {
                asset_id: "a2".into(),
                reason: "a quick scan of this asset is already queued or running".into(),
            }],
        }),
        Event::AlertCreated(AlertCreated {
            alert_id: "al".into(),
            monitor_id: "m".into(),
            asset_id: "a".into(),
            scan_job_id: Some("s".into()),
            discovery_job_id: None,
            alert_type: "new_port".into(),
            severity: "medium".into(),
            title: "New open port 8443 (https) on example.com".into(),
            details: serde_json::json!({"port": 8443, "service": "https"}),
        }),
        Event::AlertCreated(AlertCreated {
            alert_id: "al2".into(),
            monitor_id: "m".into(),
            asset_id: "a".into(),
            scan_job_id: None,
            discovery_job_id: Some("d".into()),
            alert_type: "new_subdomain".into(),
            severity: "medium".into(),
            title: "New subdomain api.example.com of example.com".into(),
            details: serde_json::json!({"name": "api.example.com", "domain": "example.com"}),
        }),
        Event::AlertAcknowledged(AlertAcknowledged {
            alert_id: "al".into(),
            notes: Some("expected".into()),
        }),
        Event::AlertResolved(AlertResolved {
            alert_id: "al".into(),
            from: "acknowledged".into(),
            notes: None,
        }),
        Event::DiscoveryRequested(DiscoveryRequested {
            discovery_job_id: "d".into(),
            domains: vec!["example.com".into()],
            deep: false,
            monitor_id: Some("m".into()),
        }),
        Event::DiscoveryStarted(DiscoveryStarted {
            discovery_job_id: "d".into(),
            worker_id: "w".into(),
            attempt: 1,
        }),
        Event::DiscoveryProgressed(DiscoveryProgressed {
            discovery_job_id: "d".into(),
            progress: 40,
            stage: "bruteforce".into(),
        }),
        Event::DiscoveryNamesFound(DiscoveryNamesFound {
            discovery_job_id: "d".into(),
            names: vec![FoundName {
                name: "old.example.com".into(),
                addresses: vec![],
                cname: Some("edge.example.net".into()),
                sources: vec!["ct".into()],
                expired: true,
            }],
        }),
        Event::DiscoveryCompleted(DiscoveryCompleted {
            discovery_job_id: "d".into(),
            domains: vec!["example.com".into()],
            modules: vec![ModuleRun {
                module: "axfr".into(),
                found: 0,
                duration_ms: 12,
                error: Some("refused".into()),
            }],
            subdomains: 1,
            new_names: vec!["api.example.com".into()],
            ips: vec![FoundAddress {
                address: "192.0.2.1".into(),
                names: vec!["api.example.com".into()],
                ptr: vec!["host.example.net".into()],
            }],
            services: vec![FoundService {
                host: "api.example.com".into(),
                port: 443,
                service: "https".into(),
                sans: vec!["api.example.com".into()],
            }],
            wildcard: vec![Wildcard {
                zone: "dev.example.com".into(),
                answers: vec!["192.0.2.9".into()],
                filtered: 3,
            }],
        }),
        Event::DiscoveryFailed(DiscoveryFailed {
            discovery_job_id: "d".into(),
            reason: "no DNS server answered".into(),
        }),
        Event::DiscoveryCancelled(DiscoveryCancelled {
            discovery_job_id: "d".into(),
        }),
        Event::DiscoveryPromoted(DiscoveryPromoted {
            discovery_job_id: "d".into(),
            group_id: "g".into(),
            asset_ids: vec!["a".into()],
            values: vec!["api.example.com".into()],
        }),
    ]
}

/// `v` against `schema` with a complete JSON Schema validator (types, enums, patterns, lengths,
/// ranges, formats as assertions where the draft says so); every error, by its location.
fn validate(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| format!("{path}: bad schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{path}{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn schema(event_type: &str, version: i32) -> Value {
    let path = format!(
        "{}/schemas/{event_type}.v{version}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_event_type_has_a_schema_and_every_sample_validates() {
    let samples = samples();
    for (t, v) in EVENT_TYPES {
        assert!(
            samples.iter().any(|e| e.event_type() == *t),
            "no sample of {t}"
        );
        for version in 1..=*v {
            schema(t, version);
        }
    }
    for e in samples {
        let s = schema(e.event_type(), e.schema_version());
        validate(&s, &e.data(), e.event_type()).unwrap();
    }
}

#[test]
fn the_checker_rejects_what_a_schema_forbids() {
    let s = schema("asset.added", 2);
    let mut bad = samples()[6].data();
    bad["criticality"] = "extreme".into();
    assert!(validate(&s, &bad, "x").is_err());
    let mut extra = samples()[6].data();
    extra["surprise"] = 1.into();
    assert!(validate(&s, &extra, "x").is_err());
    // What the subset checker this replaced let through: a pattern, a range.
    let key = schema("api_key.created", 1);
    let mut short_hash = samples()[1].data();
    short_hash["keyHash"] = "abc".into();
    let why = validate(&key, &short_hash, "key").unwrap_err();
    assert!(why.contains("/keyHash"), "{why}");
    let done = schema("discovery.completed", 1);
    let sample = samples()
        .into_iter()
        .find(|e| e.event_type() == "discovery.completed")
        .unwrap();
    let mut negative = sample.data();
    let field = done["properties"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, p)| p["minimum"] == 0 && negative.get(k.as_str()).is_some())
        .map(|(k, _)| k.clone())
        .expect("a counted field");
    negative[&field] = (-1).into();
    assert!(validate(&done, &negative, "done").is_err(), "{field}");
}

#[test]
fn delivered_bodies_validate_against_their_schemas() {
    use crate::{audit_payload, payload, test_payload, Actor, RecordedEvent};
    let mut actor = Actor::system_part("k");
    actor.kind = crate::ActorKind::ApiKey;
    actor.role = Some(Role::Owner);
    actor.source_ip = Some("203.0.113.7".into());
    for (i, e) in samples().into_iter().enumerate() {
        let r = RecordedEvent {
            event_id: uuid::Uuid::now_v7(),
            position: 10 + i as i64,
            stream_id: "s-1".into(),
            stream_version: 1,
            event_type: e.event_type().into(),
            schema_version: e.schema_version(),
            occurred_at: chrono::Utc::now(),
            org_id: "o".into(),
            actor: if i % 2 == 0 {
                actor.clone()
            } else {
                Actor::system()
            },
            request_id: "r".into(),
            correlation_id: "r".into(),
            causation_id: None,
            data: e.data(),
            chain_seq: 1,
            prev_hash: String::new(),
            hash: String::new(),
            trace_parent: None,
        };
        validate(&schema("payload", 1), &payload(&r), "payload").unwrap();
        let audit = audit_payload(&r);
        validate(&schema("audit", 1), &audit, "audit").unwrap();
        assert_eq!(audit["type"], format!("audit.{}", e.event_type()));
        assert!(audit["data"]["details"].get("keyHash").is_none());
    }
    let t = test_payload(&"o".into(), &"w".into(), &chrono::Utc::now());
    validate(&schema("webhook.test", 1), &t, "test").unwrap();
}

#[test]
fn every_sample_decodes_back_to_itself() {
    for e in samples() {
        let back = crate::decode(e.event_type(), e.schema_version(), &e.data()).unwrap();
        assert_eq!(back, e, "{}", e.event_type());
    }
}
