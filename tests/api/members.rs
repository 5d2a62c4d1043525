use crate::cli::{easm, json_line};
use crate::helpers::*;
use crate::on_both_backends;
use easm_domain::Plan;
use reqwest::StatusCode;
use serde_json::json;
use std::process::Command;

on_both_backends!(members_are_managed_from_the_cli_and_cap_their_keys);

/// Members come and go and change roles from the command line (never with an API key); a
/// member's key acts with at most the member's current role, and leaves with the member.
async fn members_are_managed_from_the_cli_and_cap_their_keys(b: Backend) {
    let app = spawn_app(b).await;
    let (org, owner) = app.org(Plan::Pro).await;
    let admin = |args: &[&str]| json_line(&easm(&app.store, args));
    let refused = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_easm"))
            .args(args)
            .envs(app.store.env())
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success(), "easm {args:?} must fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };

    // `easm admin add-user --org ORG --email EMAIL --role ROLE [more]`.
    let add_user = |email: &str, role: &str, more: &[&str]| -> Vec<String> {
        let mut args = [
            "admin", "add-user", "--org", &org, "--email", email, "--role", role,
        ]
        .map(str::to_string)
        .to_vec();
        args.extend(more.iter().map(|a| a.to_string()));
        args
    };
    fn strs(args: &[String]) -> Vec<&str> {
        args.iter().map(String::as_str).collect()
    }

    let ana = admin(&strs(&add_user(" Ana@Example.com ", "admin", &[])));
    assert_eq!(ana["email"], "ana@example.com");
    let ana = ana["userId"].as_str().unwrap().to_string();
    let bob = admin(&strs(&add_user(
        "bob@example.com",
        "analyst",
        &["--name", "Bob"],
    )));
    let bob = bob["userId"].as_str().unwrap().to_string();
    assert!(
        refused(&strs(&add_user("ana@example.com", "viewer", &[]))).contains("already a member")
    );
    assert!(refused(&strs(&add_user("not-an-email", "viewer", &[]))).contains("email"));

    // Bob's key takes Bob's role; Ana's analyst key stays an analyst although Ana is an admin.
    let bob_key = admin(&["admin", "create-key", "--org", &org, "--user", &bob]);
    let (bob_key_id, bob_key) = (
        bob_key["keyId"].as_str().unwrap().to_string(),
        bob_key["key"].as_str().unwrap().to_string(),
    );
    let ana_key = admin(&[
        "admin",
        "create-key",
        "--org",
        &org,
        "--user",
        &ana,
        "--role",
        "analyst",
    ]);
    let ana_key = ana_key["key"].as_str().unwrap().to_string();
    assert!(refused(&[
        "admin",
        "create-key",
        "--org",
        &org,
        "--user",
        &bob,
        "--role",
        "owner"
    ])
    .contains("cannot be owner"));
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

    let members = app.get(&owner, "/api/org/members").await;
    assert_eq!(members.status, StatusCode::OK);
    assert_eq!(members.body["total"], 2);
    assert_eq!(members.body["items"][0]["email"], "ana@example.com");
    assert_eq!(members.body["items"][1]["name"], "Bob");
    assert_eq!(members.body["items"][1]["role"], "analyst");
    assert_eq!(
        app.get(&bob_key, "/api/org/members").await.status,
        StatusCode::FORBIDDEN
    );
    let keys = app.get(&owner, "/api/keys?perPage=100").await;
    let listed = keys.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == bob_key_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["userId"], bob.as_str());

    // Roles are account actions: never with an API key, however strong.
    for r in [
        app.patch(
            &owner,
            &format!("/api/org/members/{bob}"),
            json!({"role": "owner"}),
        )
        .await,
        app.delete(&owner, &format!("/api/org/members/{bob}")).await,
    ] {
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.code(), "API_KEY_NOT_ALLOWED");
    }

    // Demoting Bob demotes his key at once.
    assert_eq!(
        admin(&["admin", "set-role", "--user-id", &bob, "--role", "viewer"])["role"],
        "viewer"
    );
    let g = app
        .post(&bob_key, "/api/groups", json!({"name": "Again"}))
        .await;
    assert_eq!(g.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get(&bob_key, "/api/groups").await.status,
        StatusCode::OK
    );

    // The last owner stays; leaving revokes the member's keys.
    assert_eq!(
        admin(&["admin", "set-role", "--user-id", &ana, "--role", "owner"])["role"],
        "owner"
    );
    assert!(refused(&["admin", "remove-user", "--user-id", &ana]).contains("last owner"));
    let removed = admin(&["admin", "remove-user", "--user-id", &bob]);
    assert_eq!(removed["revokedKeys"], json!([bob_key_id]));
    assert_eq!(
        app.get(&bob_key, "/api/groups").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get(&owner, "/api/org/members").await.body["total"], 1);
    assert!(
        refused(&["admin", "set-role", "--user-id", &bob, "--role", "viewer"])
            .contains("no member")
    );

    // In the log (so in the audit trail and exports), and rebuilt the same.
    let changed = app.get(&owner, "/api/events?type=user.role_changed").await;
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
