//! Members come and go and change roles from the command line (never with an API key); a
//! member's key acts with at most the member's current role, and leaves with the member.

use crate::cli::{easm, json_line};
use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use easm_events::OrgId;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::process::Command;

on_both_backends!(
    members_are_added_from_the_cli_once_per_address,
    a_members_key_acts_with_at_most_the_members_role,
    member_roles_are_never_changed_with_an_api_key,
    the_last_owner_stays_and_leaving_revokes_the_members_keys,
);

/// A pro organization with two members added from the command line: Ana (admin) and Bob
/// (analyst, named).
struct Members {
    app: TestApp,
    org: OrgId,
    owner: String,
    ana: String,
    bob: String,
}

impl Members {
    async fn new(b: Backend) -> Members {
        let app = spawn_app(b).await;
        let (org, owner) = app.org(Plan::Pro).await;
        let mut m = Members {
            app,
            org,
            owner,
            ana: String::new(),
            bob: String::new(),
        };
        let ana = m.admin(&m.add_user(" Ana@Example.com ", "admin", &[]));
        assert_eq!(ana["email"], "ana@example.com");
        m.ana = ana["userId"].as_str().unwrap().to_string();
        let bob = m.admin(&m.add_user("bob@example.com", "analyst", &["--name", "Bob"]));
        m.bob = bob["userId"].as_str().unwrap().to_string();
        m
    }

    /// `easm <args>`, which must succeed; its JSON answer.
    fn admin<S: AsRef<str>>(&self, args: &[S]) -> Value {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        json_line(&easm(&self.app.store, &args))
    }

    /// `easm <args>`, which must fail; what it said.
    fn refused<S: AsRef<str>>(&self, args: &[S]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_easm"))
            .args(args.iter().map(AsRef::as_ref))
            .envs(self.app.store.env())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success(), "easm must fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// `easm admin add-user --org ORG --email EMAIL --role ROLE [more]`.
    fn add_user(&self, email: &str, role: &str, more: &[&str]) -> Vec<String> {
        let mut args = [
            "admin",
            "add-user",
            "--org",
            self.org.as_str(),
            "--email",
            email,
            "--role",
            role,
        ]
        .map(str::to_string)
        .to_vec();
        args.extend(more.iter().map(|a| a.to_string()));
        args
    }

    /// A key made for `user` (with `role`, else the member's); (key id, key).
    fn key_for(&self, user: &str, role: Option<&str>) -> (String, String) {
        let mut args = vec![
            "admin",
            "create-key",
            "--org",
            self.org.as_str(),
            "--user",
            user,
        ];
        if let Some(role) = role {
            args.extend(["--role", role]);
        }
        let key = self.admin(&args);
        (
            key["keyId"].as_str().unwrap().to_string(),
            key["key"].as_str().unwrap().to_string(),
        )
    }

    fn set_role(&self, user: &str, role: &str) -> Value {
        self.admin(&["admin", "set-role", "--user-id", user, "--role", role])
    }
}

async fn members_are_added_from_the_cli_once_per_address(b: Backend) {
    let m = Members::new(b).await;
    assert!(m
        .refused(&m.add_user("ana@example.com", "viewer", &[]))
        .contains("already a member"));
    assert!(m
        .refused(&m.add_user("not-an-email", "viewer", &[]))
        .contains("email"));
    let members = m.app.get(&m.owner, "/api/org/members").await;
    assert_eq!(members.status, StatusCode::OK);
    assert_eq!(members.body["total"], 2);
    assert_eq!(members.body["items"][0]["email"], "ana@example.com");
    assert_eq!(members.body["items"][1]["name"], "Bob");
    assert_eq!(members.body["items"][1]["role"], "analyst");
}

/// Bob's key takes Bob's role; Ana's analyst key stays an analyst although Ana is an admin;
/// demoting Bob demotes his key at once.
async fn a_members_key_acts_with_at_most_the_members_role(b: Backend) {
    let m = Members::new(b).await;
    let (bob_key_id, bob_key) = m.key_for(&m.bob, None);
    let (_, ana_key) = m.key_for(&m.ana, Some("analyst"));
    assert!(m
        .refused(&[
            "admin",
            "create-key",
            "--org",
            m.org.as_str(),
            "--user",
            &m.bob,
            "--role",
            "owner"
        ])
        .contains("cannot be owner"));
    let app = &m.app;
    let g = app
        .post(&bob_key, "/api/groups", json!({"name": "Bob's"}))
        .await;
    assert_eq!(g.status, StatusCode::CREATED);
    assert_eq!(
        app.get(&bob_key, "/api/keys").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&ana_key, "/api/keys").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&bob_key, "/api/org/members").await.status,
        StatusCode::FORBIDDEN
    );
    let keys = app.get(&m.owner, "/api/keys?perPage=100").await;
    let listed = keys.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == bob_key_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["userId"], m.bob.as_str());

    assert_eq!(m.set_role(&m.bob, "viewer")["role"], "viewer");
    // The CLI is another process: the server's key cache follows its change from the log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while app
        .patch(&bob_key, "/api/groups/none", json!({"name": "x"}))
        .await
        .status
        != StatusCode::FORBIDDEN
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the role change never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let g = app
        .post(&bob_key, "/api/groups", json!({"name": "Again"}))
        .await;
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&bob_key, "/api/groups").await.status,
        StatusCode::OK
    );
}

/// Roles are account actions: never with an API key, however strong.
async fn member_roles_are_never_changed_with_an_api_key(b: Backend) {
    let m = Members::new(b).await;
    let bob = format!("/api/org/members/{}", m.bob);
    for r in [
        m.app.patch(&m.owner, &bob, json!({"role": "owner"})).await,
        m.app.delete(&m.owner, &bob).await,
    ] {
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.code(), "API_KEY_NOT_ALLOWED");
    }
}

/// The last owner stays; leaving revokes the member's keys; all of it is in the log (so in the
/// audit trail and exports), and rebuilt the same.
async fn the_last_owner_stays_and_leaving_revokes_the_members_keys(b: Backend) {
    let m = Members::new(b).await;
    let (bob_key_id, bob_key) = m.key_for(&m.bob, None);
    assert_eq!(m.set_role(&m.bob, "viewer")["role"], "viewer");
    assert_eq!(m.set_role(&m.ana, "owner")["role"], "owner");
    assert!(m
        .refused(&["admin", "remove-user", "--user-id", &m.ana])
        .contains("last owner"));
    let removed = m.admin(&["admin", "remove-user", "--user-id", &m.bob]);
    assert_eq!(removed["revokedKeys"], json!([bob_key_id]));
    let app = &m.app;
    assert_eq!(
        app.get(&bob_key, "/api/groups").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get(&m.owner, "/api/org/members").await.body["total"], 1);
    assert!(m
        .refused(&["admin", "set-role", "--user-id", &m.bob, "--role", "viewer"])
        .contains("no member"));

    let changed = app
        .get(&m.owner, "/api/events?type=user.role_changed")
        .await;
    assert_eq!(
        changed.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        changed.body
    );
    let rows = app.state.read().dump().await.unwrap();
    app.state.commands.projector().rebuild().await.unwrap();
    assert_eq!(app.state.read().dump().await.unwrap(), rows);
}
