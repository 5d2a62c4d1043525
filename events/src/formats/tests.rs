use super::*;
use crate::names::Severity;
use serde_json::json;

fn finding_subject(cve: Option<&str>) -> Subject {
    Subject {
        severity: Some(Severity::High),
        finding: Some(FindingFacts {
            id: "f1".into(),
            title: "Exposed .git | directory".into(),
            template_id: "git-config".into(),
            category: "exposure".into(),
            description: "The repository = readable\nfrom the web".into(),
            status: "open".into(),
            matched_at: "https://app.example.com:8443/.git/config".into(),
            cve: cve.map(str::to_string),
            cwe: None,
            cvss_score: cve.map(|_| 7.5),
            references: vec!["https://example.com/ref".into()],
            remediation: "Remove it".into(),
        }),
        asset: Some(AssetFacts {
            id: "a1".into(),
            value: "app.example.com".into(),
            asset_type: "subdomain".into(),
            group_id: "g1".into(),
            tags: vec!["prod".into()],
        }),
    }
}

fn msg<'a>(id: &'a str, body: &'a Value, subject: &'a Subject) -> Message<'a> {
    Message { id, body, subject }
}

fn body(t: &str, data: Value) -> Value {
    json!({"type": t, "timestamp": "2026-12-06T10:00:00.000000Z", "data": data})
}

#[test]
fn cloudevents_carry_the_required_attributes() {
    let b = body(
        "finding.new",
        json!({"findingId": "f1", "orgId": "o1", "severity": "high"}),
    );
    let s = Subject::default();
    let m = msg("evt_1_w", &b, &s);
    let r = render(crate::PayloadFormat::CloudEvents, &m);
    assert_eq!(r.content_type, "application/cloudevents+json");
    assert_eq!(r.body["specversion"], "1.0");
    assert_eq!(r.body["id"], "evt_1_w");
    assert_eq!(r.body["type"], "com.easm.finding.new");
    assert_eq!(r.body["source"], "/easm/orgs/o1");
    assert_eq!(r.body["subject"], "f1");
    assert_eq!(r.body["data"]["findingId"], "f1");
}

#[test]
fn ocsf_classes_follow_the_event() {
    let b = body("finding.new", json!({"findingId": "f1", "orgId": "o1"}));
    let s = finding_subject(None);
    let m = msg("m", &b, &s);
    let o = render(crate::PayloadFormat::Ocsf, &m).body;
    assert_eq!(o["class_uid"], 2004);
    assert_eq!(o["type_uid"], 200401);
    assert_eq!(o["severity_id"], 4);
    assert_eq!(o["finding_info"]["uid"], "f1");
    assert_eq!(o["resources"][0]["name"], "app.example.com");
    let s = finding_subject(Some("CVE-2024-1234"));
    let resolved = body(
        "finding.resolved",
        json!({"findingId": "f1", "orgId": "o1"}),
    );
    let m = msg("m", &resolved, &s);
    let o = render(crate::PayloadFormat::Ocsf, &m).body;
    assert_eq!(o["class_uid"], 2002);
    assert_eq!(o["type_uid"], 200203);
    assert_eq!(o["vulnerabilities"][0]["cve"]["uid"], "CVE-2024-1234");
    let audit = body(
        "audit.api_key.created",
        json!({"orgId": "o1", "action": "api_key.created", "actor": {"kind": "api_key", "id": "k0"},
               "resource": {"type": "api_key", "id": "k1"}, "details": {"keyId": "k1", "name": "ci"}}),
    );
    let none = Subject::default();
    let m = msg("m", &audit, &none);
    let o = render(crate::PayloadFormat::Ocsf, &m).body;
    assert_eq!(
        (o["class_uid"].clone(), o["activity_id"].clone()),
        (json!(3001), json!(1))
    );
    assert_eq!(o["user"]["uid"], "k1");
    let group = body(
        "audit.group.created",
        json!({"orgId": "o1", "action": "group.created", "actor": {"kind": "api_key", "id": "k0", "sourceIp": "203.0.113.9"},
               "resource": {"type": "group", "id": "g1"}, "details": {}}),
    );
    let m = msg("m", &group, &none);
    let o = render(crate::PayloadFormat::Ocsf, &m).body;
    assert_eq!(o["class_uid"], 6003);
    assert_eq!(o["src_endpoint"]["ip"], "203.0.113.9");
}

#[test]
fn ecs_documents_name_the_vulnerability_host_and_url() {
    let b = body("finding.new", json!({"findingId": "f1", "orgId": "o1"}));
    let s = finding_subject(Some("CVE-2024-1234"));
    let m = msg("m", &b, &s);
    let d = render(crate::PayloadFormat::Ecs, &m).body;
    assert_eq!(d["@timestamp"], "2026-12-06T10:00:00.000000Z");
    assert_eq!(d["event"]["kind"], "state");
    assert_eq!(d["event"]["category"][0], "vulnerability");
    assert_eq!(d["event"]["severity"], 73);
    assert_eq!(d["vulnerability"]["id"], "CVE-2024-1234");
    assert_eq!(d["vulnerability"]["score"]["base"], 7.5);
    assert_eq!(d["host"]["name"], "app.example.com");
    assert_eq!(d["url"]["domain"], "app.example.com");
}

#[test]
fn cef_escapes_its_separators() {
    let b = body("finding.new", json!({"findingId": "f1", "orgId": "o1"}));
    let s = finding_subject(None);
    let m = msg("m", &b, &s);
    let line = cef_line(&m);
    assert!(line.starts_with("CEF:0|easm|easm|"), "{line}");
    assert!(
        line.contains("|finding.new|finding.new: Exposed .git \\| directory on app.example.com|8|"),
        "{line}"
    );
    assert!(line.contains("dhost=app.example.com"));
    assert!(line.contains("request=https://app.example.com:8443/.git/config"));
    assert!(!line.contains('\n'));
}

#[test]
fn chat_messages_are_for_people_only() {
    let b = body("finding.new", json!({"findingId": "f1", "orgId": "o1"}));
    let s = finding_subject(None);
    let m = msg("m", &b, &s);
    let slack = slack_message(&m, Some("https://easm.example.com/")).unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("*Severity:* HIGH") && text.contains("app.example.com"),
        "{text}"
    );
    assert!(
        text.contains("<https://easm.example.com/api/findings/f1|Open in easm>"),
        "{text}"
    );
    let teams = teams_message(&m, None).unwrap();
    assert_eq!(teams["attachments"][0]["content"]["type"], "AdaptiveCard");
    let other = body("asset.added", json!({"assetId": "a1", "orgId": "o1"}));
    let m = msg("m", &other, &s);
    assert!(slack_message(&m, None).is_none());
}

#[test]
fn filters_need_every_criterion() {
    use crate::endpoint_options::DeliveryFilter;
    let b = body("finding.new", json!({"findingId": "f1", "orgId": "o1"}));
    let s = finding_subject(None);
    let m = msg("m", &b, &s);
    let f = |min: Option<Severity>, groups: &[&str], tags: &[&str]| DeliveryFilter {
        min_severity: min,
        group_ids: groups.iter().map(|g| (*g).into()).collect(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    assert_eq!(filtered_out(None, &m), None);
    assert_eq!(
        filtered_out(Some(&f(Some(Severity::High), &["g1"], &["PROD"])), &m),
        None
    );
    assert!(filtered_out(Some(&f(Some(Severity::Critical), &[], &[])), &m).is_some());
    assert!(filtered_out(Some(&f(None, &["g2"], &[])), &m).is_some());
    assert!(filtered_out(Some(&f(None, &[], &["dev"])), &m).is_some());
    let other = body("group.created", json!({"groupId": "g1", "orgId": "o1"}));
    let none = Subject::default();
    let m = msg("m", &other, &none);
    assert!(filtered_out(Some(&f(Some(Severity::Info), &[], &[])), &m).is_some());
}

#[test]
fn native_kinds_queue_their_own_envelopes() {
    use crate::endpoint_options::EndpointOptions;
    use crate::EndpointKind;
    let b = body("finding.new", json!({"findingId": "f1", "orgId": "o1"}));
    let s = finding_subject(None);
    let m = msg("evt_1_w", &b, &s);
    let ctx = Context {
        public_url: None,
        hostname: "easm-1".into(),
    };
    let hec = EndpointOptions {
        kind: EndpointKind::SplunkHec,
        index: Some("sec".into()),
        ..Default::default()
    };
    let e: Value = serde_json::from_str(&queued_body(&hec, &m, &ctx).unwrap()).unwrap();
    assert_eq!(e["sourcetype"], "easm:finding.new");
    assert_eq!(e["index"], "sec");
    assert_eq!(e["time"], 1_796_551_200.0);
    assert_eq!(e["event"]["type"], "finding.new");
    let syslog = EndpointOptions {
        kind: EndpointKind::Syslog,
        format: crate::PayloadFormat::Cef,
        ..Default::default()
    };
    let line = queued_body(&syslog, &m, &ctx).unwrap();
    assert!(
        line.starts_with("<131>1 2026-12-06T10:00:00.000000Z easm-1 easm - finding.new - CEF:0|"),
        "{line}"
    );
    let slack = EndpointOptions {
        kind: EndpointKind::Slack,
        ..Default::default()
    };
    let group = body("group.created", json!({"groupId": "g1", "orgId": "o1"}));
    let m = msg("m", &group, &s);
    assert!(queued_body(&slack, &m, &ctx).is_err());
}
