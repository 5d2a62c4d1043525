//! The command side: load the aggregates a command needs, let the domain decide, append with the
//! expected versions and constraints, and on a conflict load and decide again (bounded). Once
//! committed, the read models are brought up to the new position so the caller reads its writes.

use base64::Engine;
use easm_domain::{
    active_scan_key, add_assets, audit_webhook_id, create_org, finding_id, Aggregate, Asset,
    AssetPatch, AssetRisk, DomainError, Finding, Group, Inventory, ItemError, NewAsset,
    Organization, Plan, Role, ScanJob, ScanStatus, Webhook, WebhookSpec,
};
use easm_events::{
    AccessDenied, Detection, Event, EventMeta, Observed, RecordedEvent, SeverityCounts,
};
use easm_projections::read::AssetView;
use easm_projections::{Projector, ReadModels};
use easm_store::{
    AppendError, AppendRequest, Constraint, Db, EventLog, StoreError, StreamAppend, WebhookSecrets,
};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

mod monitors;

pub use monitors::{alert_stream, monitor_stream, MonitorRun};

/// How many times a command is decided again after losing a race, before answering 409.
const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the resource changed concurrently {0} times; retry the request")]
    Contention(u32),
}

pub fn org_stream(id: &str) -> String {
    format!("org-{id}")
}
pub fn group_stream(id: &str) -> String {
    format!("group-{id}")
}
pub fn asset_stream(id: &str) -> String {
    format!("asset-{id}")
}
/// Reservation scope of the organization's asset values: unique, and counted for the plan.
pub const ASSET_VALUES: &str = "asset_values";
/// Reservation scope of a group's members, so a group is deleted only when empty.
fn members(group_id: &str) -> String {
    format!("group_members:{group_id}")
}

pub fn scan_stream(id: &str) -> String {
    format!("scan-{id}")
}
/// What a scan is asked for.
pub struct ScanRequest<'a> {
    pub asset_id: &'a str,
    pub profile: &'a str,
    pub ports: Option<&'a [i64]>,
    pub rerun_of: Option<&'a str>,
}

/// Reservation scope of active scan jobs: one per asset and profile.
const ACTIVE_SCANS: &str = "active_scans";
/// Reservation scope of the scans requested in a calendar month (UTC), for the plan's quota.
fn month_scans(at: chrono::DateTime<chrono::Utc>) -> String {
    format!("scans:{}", at.format("%Y-%m"))
}

pub fn finding_stream(id: &str) -> String {
    format!("finding-{id}")
}
/// Findings decided and appended together when results are imported.
const IMPORT_CHUNK: usize = 200;

/// What an import of results did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub new: usize,
    pub redetected: usize,
    pub reopened: usize,
    /// Already recorded for this scan job (a repeated import).
    pub unchanged: usize,
}

/// The announced risk of an asset (`risk.changed`).
pub fn risk_stream(asset_id: &str) -> String {
    format!("risk-{asset_id}")
}

pub fn webhook_stream(id: &str) -> String {
    format!("webhook-{id}")
}

/// How long a replaced signing secret keeps signing, so receivers can switch over.
pub const SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A webhook signing secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks).
fn issue_webhook_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

pub fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// A new API key: `ag_sk_` + base64url of 32 random bytes. Only its SHA-256 is kept.
pub struct IssuedKey {
    pub key_id: String,
    pub secret: String,
}

pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn issue_key() -> IssuedKey {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    IssuedKey {
        key_id: new_id(),
        secret: format!(
            "ag_sk_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ),
    }
}

fn key_prefix(secret: &str) -> String {
    secret.chars().take(12).collect()
}

/// Findings per severity of what a scan reported (one per finding).
fn count_severities(detections: &[Detection]) -> SeverityCounts {
    let mut c = SeverityCounts::default();
    let mut seen = std::collections::HashSet::new();
    for d in detections {
        if seen.insert((&d.template_id, &d.matched_at, &d.matcher_name)) {
            c.add(&d.severity, 1);
        }
    }
    c
}

/// One decision ready to append.
struct Decision {
    streams: Vec<StreamAppend>,
    constraints: Vec<Constraint>,
}

impl Decision {
    fn one(stream_id: String, expected_version: i64, events: Vec<Event>) -> Self {
        Decision {
            streams: vec![StreamAppend {
                stream_id,
                expected_version,
                events,
            }],
            constraints: vec![],
        }
    }

    fn is_empty(&self) -> bool {
        self.streams.iter().all(|s| s.events.is_empty())
    }
}

/// Live groups kept for asset decisions; past this many the cache starts over.
const GROUP_CACHE: usize = 10_000;

type GroupCache = std::sync::Mutex<std::collections::HashMap<(String, String), (i64, Group)>>;

#[derive(Clone)]
pub struct Service {
    log: EventLog,
    secrets: WebhookSecrets,
    projector: Arc<Projector>,
    read: ReadModels,
    committed: Arc<Notify>,
    groups: Arc<GroupCache>,
}

impl Service {
    pub fn new(db: Db, projector: Arc<Projector>) -> Self {
        Service {
            log: projector.log(),
            secrets: WebhookSecrets::new(db.clone()),
            projector,
            read: ReadModels::new(db),
            committed: Arc::default(),
            groups: Arc::default(),
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub fn read(&self) -> &ReadModels {
        &self.read
    }

    pub fn projector(&self) -> &Arc<Projector> {
        &self.projector
    }

    /// Decide and append, deciding again when the state moved underneath, then wait for the
    /// read models. `decide` is re-run from scratch on every attempt.
    async fn execute<F, Fut>(
        &self,
        org_id: &str,
        meta: &EventMeta,
        mut decide: F,
    ) -> Result<Vec<RecordedEvent>, ServiceError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Decision, ServiceError>>,
    {
        for attempt in 1..=MAX_ATTEMPTS {
            let d = decide().await?;
            if d.is_empty() {
                return Ok(vec![]);
            }
            let req = AppendRequest {
                org_id: org_id.to_string(),
                meta: meta.clone(),
                streams: d.streams,
                constraints: d.constraints,
            };
            match self.log.append(req).await {
                Ok(events) => {
                    self.committed.notify_one();
                    return Ok(events);
                }
                Err(AppendError::Conflict { .. } | AppendError::Constraint(_)) => {}
                Err(AppendError::Store(e)) if e.is_transient() => {}
                Err(AppendError::Store(e)) => return Err(e.into()),
                Err(AppendError::TooLarge(n)) => {
                    return Err(
                        DomainError::validation("assets", format!("{n} items is too many")).into(),
                    )
                }
            }
            let jitter = rand::random::<u64>() % (2 << attempt.min(6));
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        }
        Err(ServiceError::Contention(MAX_ATTEMPTS))
    }

    async fn load<A: Aggregate>(
        &self,
        org_id: &str,
        stream: &str,
    ) -> Result<(i64, A), ServiceError> {
        let (version, events) = self.log.load(org_id, stream).await?;
        Ok((version, A::from_events(&events)))
    }

    /// A command on one stream that needs nothing but that stream's state.
    async fn on_stream<A: Aggregate>(
        &self,
        org_id: &str,
        meta: &EventMeta,
        stream: String,
        decide: impl Fn(&A) -> Result<Vec<Event>, DomainError>,
    ) -> Result<(), ServiceError> {
        self.recorded_on_stream(org_id, meta, stream, decide)
            .await
            .map(drop)
    }

    /// `on_stream`, answering the events it recorded.
    async fn recorded_on_stream<A: Aggregate>(
        &self,
        org_id: &str,
        meta: &EventMeta,
        stream: String,
        decide: impl Fn(&A) -> Result<Vec<Event>, DomainError>,
    ) -> Result<Vec<RecordedEvent>, ServiceError> {
        self.execute(org_id, meta, || async {
            let (v, state) = self.load::<A>(org_id, &stream).await?;
            Ok(Decision::one(stream.clone(), v, decide(&state)?))
        })
        .await
    }

    pub async fn create_org(
        &self,
        meta: &EventMeta,
        name: &str,
        plan: Plan,
    ) -> Result<(String, IssuedKey), ServiceError> {
        let org_id = new_id();
        let key = issue_key();
        let mut events = create_org(&org_id, name, plan)?;
        let org = Organization::from_events(&events);
        events.extend(org.create_key(
            &key.key_id,
            "owner key",
            Role::Owner,
            &hash_key(&key.secret),
            &key_prefix(&key.secret),
            None,
        )?);
        let stream = org_stream(&org_id);
        self.execute(&org_id, meta, || {
            let events = events.clone();
            let stream = stream.clone();
            async move { Ok(Decision::one(stream, 0, events)) }
        })
        .await?;
        Ok((org_id, key))
    }

    /// A key of the organization, or of a member (`user_id`); `role` defaults to the member's.
    pub async fn create_key(
        &self,
        meta: &EventMeta,
        org_id: &str,
        role: Option<Role>,
        name: &str,
        user_id: Option<&str>,
    ) -> Result<IssuedKey, ServiceError> {
        let key = issue_key();
        let stream = org_stream(org_id);
        self.execute(org_id, meta, || async {
            let (v, org) = self.load::<Organization>(org_id, &stream).await?;
            let role = match (role, user_id) {
                (Some(role), _) => role,
                (None, Some(user)) => org.user(user)?.role,
                (None, None) => return Err(DomainError::validation("role", "is required").into()),
            };
            let events = org.create_key(
                &key.key_id,
                name,
                role,
                &hash_key(&key.secret),
                &key_prefix(&key.secret),
                user_id,
            )?;
            Ok(Decision::one(stream.clone(), v, events))
        })
        .await?;
        Ok(key)
    }

    /// Add a member; answers the member's id and e-mail address as recorded (normalized).
    pub async fn add_user(
        &self,
        meta: &EventMeta,
        org_id: &str,
        email: &str,
        name: &str,
        role: Role,
    ) -> Result<(String, String), ServiceError> {
        let user_id = new_id();
        let events = self
            .recorded_on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
                org.add_user(&user_id, email, name, role)
            })
            .await?;
        let recorded = events
            .first()
            .and_then(|e| e.data["email"].as_str())
            .unwrap_or_default()
            .to_string();
        Ok((user_id, recorded))
    }

    pub async fn change_role(
        &self,
        meta: &EventMeta,
        org_id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<(), ServiceError> {
        self.on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
            org.change_role(user_id, role)
        })
        .await
    }

    /// Remove a member and revoke their keys; answers the revoked key ids.
    pub async fn remove_user(
        &self,
        meta: &EventMeta,
        org_id: &str,
        user_id: &str,
    ) -> Result<Vec<String>, ServiceError> {
        let events = self
            .recorded_on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
                org.remove_user(user_id)
            })
            .await?;
        Ok(events
            .iter()
            .filter(|e| e.event_type == "api_key.revoked")
            .filter_map(|e| e.data["keyId"].as_str().map(str::to_string))
            .collect())
    }

    pub async fn revoke_key(
        &self,
        meta: &EventMeta,
        org_id: &str,
        key_id: &str,
    ) -> Result<(), ServiceError> {
        self.on_stream(org_id, meta, org_stream(org_id), |org: &Organization| {
            org.revoke_key(key_id)
        })
        .await
    }

    pub async fn create_group(
        &self,
        meta: &EventMeta,
        org_id: &str,
        name: &str,
    ) -> Result<String, ServiceError> {
        let id = new_id();
        let events = Group::create(&id, name)?;
        self.execute(org_id, meta, || {
            let d = Decision::one(group_stream(&id), 0, events.clone());
            async move { Ok(d) }
        })
        .await?;
        Ok(id)
    }

    pub async fn rename_group(
        &self,
        meta: &EventMeta,
        org_id: &str,
        group_id: &str,
        name: &str,
    ) -> Result<(), ServiceError> {
        self.on_stream(org_id, meta, group_stream(group_id), |g: &Group| {
            g.rename(name)
        })
        .await
    }

    pub async fn delete_group(
        &self,
        meta: &EventMeta,
        org_id: &str,
        group_id: &str,
    ) -> Result<(), ServiceError> {
        let stream = group_stream(group_id);
        self.execute(org_id, meta, || async {
            let (v, g) = self.load::<Group>(org_id, &stream).await?;
            let held = self
                .log
                .count_reservations(org_id, &members(group_id))
                .await?;
            let mut d = Decision::one(stream.clone(), v, g.delete(held)?);
            d.constraints.push(Constraint::Empty {
                scope: members(group_id),
            });
            Ok(d)
        })
        .await?;
        Ok(())
    }

    /// Add assets to a group, all or nothing. Returns the new assets in item order, as the read
    /// models hold them from this append on.
    pub async fn add_assets(
        &self,
        meta: &EventMeta,
        org_id: &str,
        plan: Plan,
        group_id: &str,
        items: &[NewAsset],
    ) -> Result<Vec<AssetView>, ServiceError> {
        let ids: Vec<String> = items.iter().map(|_| new_id()).collect();
        let gstream = &group_stream(group_id);
        let ids = &ids;
        // The first decision assumes every value is new and the plan has room, which the append's
        // claims and limit enforce anyway; only when they refuse is the inventory read, to say why.
        let mut informed = false;
        let events = self
            .execute(org_id, meta, || {
                let inform = std::mem::replace(&mut informed, true);
                async move {
                    let (gv, group) = self.group_for_assets(org_id, gstream, inform).await?;
                    let guess = Inventory::assumed_fresh(plan);
                    let events = match add_assets(&group, items, &guess, ids) {
                        Ok(events) if !inform => events,
                        // Refused here or by the append: decide on what is stored, so that the
                        // answer names every failing item, existing values too.
                        _ => {
                            let stored = self.inventory(org_id, plan, items).await?;
                            add_assets(&group, items, &stored, ids)?
                        }
                    };
                    let mut d = Decision {
                        streams: vec![],
                        constraints: vec![Constraint::StreamAt {
                            stream_id: gstream.clone(),
                            version: gv,
                        }],
                    };
                    if let Some(max) = plan.limits().assets {
                        d.constraints.push(Constraint::AtMost {
                            scope: ASSET_VALUES.into(),
                            max,
                        });
                    }
                    for e in events {
                        if let Event::AssetAdded(a) = &e {
                            d.constraints.push(Constraint::Claim {
                                scope: ASSET_VALUES.into(),
                                key: a.value.clone(),
                                owner: a.asset_id.clone(),
                            });
                            d.constraints.push(Constraint::Claim {
                                scope: members(group_id),
                                key: a.asset_id.clone(),
                                owner: a.asset_id.clone(),
                            });
                            d.streams.push(StreamAppend {
                                stream_id: asset_stream(&a.asset_id),
                                expected_version: 0,
                                events: vec![e],
                            });
                        }
                    }
                    Ok(d)
                }
            })
            .await?;
        Ok(easm_projections::read::added_assets(&events)?)
    }

    /// A group as asset decisions see it, from a cache unless `fresh`: every such decision also
    /// states the group's stream version to its append, so a stale entry (renamed, deleted) fails
    /// the append and the retry reloads. Only live groups are kept: a group created since must
    /// not be found missing.
    async fn group_for_assets(
        &self,
        org_id: &str,
        stream: &str,
        fresh: bool,
    ) -> Result<(i64, Group), ServiceError> {
        let key = (org_id.to_string(), stream.to_string());
        if !fresh {
            if let Some(hit) = self.groups.lock().expect("groups").get(&key) {
                return Ok(hit.clone());
            }
        }
        let (version, group) = self.load::<Group>(org_id, stream).await?;
        if group.live() {
            let mut cache = self.groups.lock().expect("groups");
            if cache.len() >= GROUP_CACHE {
                cache.clear();
            }
            cache.insert(key, (version, group.clone()));
        }
        Ok((version, group))
    }

    /// What an organization holds of the values being added, and how many assets it has.
    async fn inventory(
        &self,
        org_id: &str,
        plan: Plan,
        items: &[NewAsset],
    ) -> Result<Inventory, ServiceError> {
        let values: Vec<String> = items
            .iter()
            .filter_map(|i| i.normalized().ok())
            .map(|(_, v)| v)
            .collect();
        let existing = self
            .log
            .reservations(org_id, ASSET_VALUES, &values)
            .await?
            .into_iter()
            .collect();
        Ok(Inventory {
            plan,
            live_assets: self.log.count_reservations(org_id, ASSET_VALUES).await?,
            existing,
        })
    }

    pub async fn update_asset(
        &self,
        meta: &EventMeta,
        org_id: &str,
        asset_id: &str,
        patch: &AssetPatch,
    ) -> Result<(), ServiceError> {
        let stream = asset_stream(asset_id);
        self.execute(org_id, meta, || async {
            let (v, asset) = self.load::<Asset>(org_id, &stream).await?;
            let target = match &patch.group_id {
                Some(g) => Some(self.load::<Group>(org_id, &group_stream(g)).await?),
                None => None,
            };
            let events = asset.update(patch, target.as_ref().map(|(_, g)| g))?;
            let mut d = Decision::one(stream.clone(), v, events);
            let moved = d.streams[0].events.iter().find_map(|e| match e {
                Event::AssetUpdated(u) => u.group_id.clone(),
                _ => None,
            });
            if let (Some(new_group), Some((gv, _))) = (moved, target) {
                d.constraints.extend([
                    Constraint::Release {
                        scope: members(&asset.group_id),
                        key: asset_id.to_string(),
                    },
                    Constraint::Claim {
                        scope: members(&new_group),
                        key: asset_id.to_string(),
                        owner: asset_id.to_string(),
                    },
                    Constraint::StreamAt {
                        stream_id: group_stream(&new_group),
                        version: gv,
                    },
                ]);
            }
            Ok(d)
        })
        .await?;
        Ok(())
    }

    pub async fn remove_asset(
        &self,
        meta: &EventMeta,
        org_id: &str,
        asset_id: &str,
    ) -> Result<(), ServiceError> {
        let stream = asset_stream(asset_id);
        self.execute(org_id, meta, || async {
            let (v, asset) = self.load::<Asset>(org_id, &stream).await?;
            let mut d = Decision::one(stream.clone(), v, asset.remove()?);
            d.constraints.extend([
                Constraint::Release {
                    scope: ASSET_VALUES.into(),
                    key: asset.value.clone(),
                },
                Constraint::Release {
                    scope: members(&asset.group_id),
                    key: asset_id.to_string(),
                },
            ]);
            Ok(d)
        })
        .await?;
        Ok(())
    }

    /// Create a webhook endpoint; returns its id and signing secret (shown once).
    pub async fn create_webhook(
        &self,
        meta: &EventMeta,
        org_id: &str,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<(String, String), ServiceError> {
        let id = new_id();
        let secret = self
            .create_webhook_as(meta, org_id, &id, spec, allow_private)
            .await?;
        Ok((id, secret))
    }

    /// Create endpoint `id` (a new one, or one deleted before); returns its signing secret.
    async fn create_webhook_as(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<String, ServiceError> {
        let events = Webhook::create(id, spec, allow_private)?;
        let secret = issue_webhook_secret();
        // The secret is stored before the event: a failed append leaves only an unused secret.
        self.secrets
            .rotate_in(id, &secret, easm_store::now_micros())
            .await?;
        let stream = webhook_stream(id);
        self.execute(org_id, meta, || async {
            let (v, w) = self.load::<Webhook>(org_id, &stream).await?;
            if w.live() {
                return Err(DomainError::Conflict {
                    message: "the endpoint exists already".into(),
                    existing_id: Some(id.to_string()),
                }
                .into());
            }
            Ok(Decision::one(stream.clone(), v, events.clone()))
        })
        .await?;
        Ok(secret)
    }

    /// Configure the organization's audit log webhook: the first call creates it (and needs a
    /// url); later calls change url or enabled, and rotate the secret on `regenerate`. Returns
    /// the new signing secret when one was made.
    pub async fn put_audit_webhook(
        &self,
        meta: &EventMeta,
        org_id: &str,
        url: Option<String>,
        enabled: Option<bool>,
        regenerate: bool,
        allow_private: bool,
    ) -> Result<Option<String>, ServiceError> {
        let id = audit_webhook_id(org_id);
        let (_, current) = self.load::<Webhook>(org_id, &webhook_stream(&id)).await?;
        let spec = WebhookSpec {
            url,
            events: Some(vec!["audit.*".into()]),
            description: Some("audit log".into()),
            enabled,
        };
        if !current.live() {
            let secret = self
                .create_webhook_as(meta, org_id, &id, &spec, allow_private)
                .await?;
            return Ok(Some(secret));
        }
        self.update_webhook(meta, org_id, &id, &spec, allow_private)
            .await?;
        if regenerate {
            return Ok(Some(self.rotate_webhook_secret(meta, org_id, &id).await?));
        }
        Ok(None)
    }

    pub async fn update_webhook(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<(), ServiceError> {
        self.on_stream(org_id, meta, webhook_stream(id), |w: &Webhook| {
            w.update(spec, allow_private)
        })
        .await
    }

    pub async fn delete_webhook(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
    ) -> Result<(), ServiceError> {
        self.on_stream(org_id, meta, webhook_stream(id), Webhook::delete)
            .await?;
        self.secrets.forget(id).await?;
        Ok(())
    }

    /// Replace the signing secret; the previous one keeps signing for [`SECRET_GRACE`].
    pub async fn rotate_webhook_secret(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
    ) -> Result<String, ServiceError> {
        let stream = webhook_stream(id);
        // Refuse before storing a secret for an endpoint that does not exist.
        let (_, w) = self.load::<Webhook>(org_id, &stream).await?;
        if !w.live() {
            return Err(DomainError::NotFound {
                resource: "webhook",
            }
            .into());
        }
        let until = chrono::Utc::now() + SECRET_GRACE;
        let secret = issue_webhook_secret();
        self.secrets
            .rotate_in(id, &secret, until.timestamp_micros())
            .await?;
        let until = easm_events::format_timestamp(&until);
        self.on_stream(org_id, meta, stream, |w: &Webhook| w.rotate_secret(&until))
            .await?;
        Ok(secret)
    }

    /// Queue a scan of a live asset: one active job per asset and profile (409 with the active
    /// job's id), and the plan's scans per month (402).
    pub async fn request_scan(
        &self,
        meta: &EventMeta,
        org_id: &str,
        plan: Plan,
        req: &ScanRequest<'_>,
    ) -> Result<String, ServiceError> {
        let id = new_id();
        let asset_id = req.asset_id;
        let events = ScanJob::request(&id, asset_id, req.profile, req.ports, req.rerun_of)?;
        let Some(Event::ScanRequested(requested)) = events.first() else {
            unreachable!("a request is one scan.requested")
        };
        let slot = active_scan_key(asset_id, &requested.profile);
        let month = month_scans(chrono::Utc::now());
        let limit = plan.limits().scans_per_month;
        let asset = asset_stream(asset_id);
        self.execute(org_id, meta, || async {
            let (asset_version, a) = self.load::<Asset>(org_id, &asset).await?;
            if !a.live() {
                return Err(DomainError::NotFound { resource: "asset" }.into());
            }
            if let Some((_, owner)) = self
                .log
                .reservations(org_id, ACTIVE_SCANS, std::slice::from_ref(&slot))
                .await?
                .pop()
            {
                return Err(DomainError::Conflict {
                    message: format!(
                        "a {} scan of this asset is already queued or running",
                        requested.profile
                    ),
                    existing_id: Some(owner),
                }
                .into());
            }
            let mut d = Decision::one(scan_stream(&id), 0, events.clone());
            if let Some(max) = limit {
                if self.log.count_reservations(org_id, &month).await? >= max {
                    return Err(DomainError::PlanLimit {
                        limit: "scans per month",
                        max,
                        plan: plan.as_str().into(),
                    }
                    .into());
                }
                d.constraints.push(Constraint::AtMost {
                    scope: month.clone(),
                    max,
                });
            }
            d.constraints.extend([
                Constraint::Claim {
                    scope: month.clone(),
                    key: id.clone(),
                    owner: id.clone(),
                },
                Constraint::Claim {
                    scope: ACTIVE_SCANS.into(),
                    key: slot.clone(),
                    owner: id.clone(),
                },
                Constraint::StreamAt {
                    stream_id: asset.clone(),
                    version: asset_version,
                },
            ]);
            Ok(d)
        })
        .await?;
        Ok(id)
    }

    /// Run a job again: a new job with the same asset, profile and ports.
    pub async fn rerun_scan(
        &self,
        meta: &EventMeta,
        org_id: &str,
        plan: Plan,
        id: &str,
    ) -> Result<String, ServiceError> {
        let (_, job) = self.load::<ScanJob>(org_id, &scan_stream(id)).await?;
        job.require()?;
        let ports: Option<Vec<i64>> = job
            .ports
            .as_ref()
            .map(|p| p.iter().map(|&p| i64::from(p)).collect());
        let req = ScanRequest {
            asset_id: &job.asset_id,
            profile: &job.profile,
            ports: ports.as_deref(),
            rerun_of: Some(id),
        };
        self.request_scan(meta, org_id, plan, &req).await
    }

    /// A change to a job; ending it frees its (asset, profile) slot in the same append.
    async fn on_scan(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        decide: impl Fn(&ScanJob) -> Result<Vec<Event>, DomainError>,
    ) -> Result<(), ServiceError> {
        let stream = scan_stream(id);
        self.execute(org_id, meta, || async {
            let (v, job) = self.load::<ScanJob>(org_id, &stream).await?;
            let events = decide(&job)?;
            let mut after = job.clone();
            for e in &events {
                after.apply(e);
            }
            let mut d = Decision::one(stream.clone(), v, events);
            if job.status.active() && !after.status.active() {
                d.constraints.push(Constraint::Release {
                    scope: ACTIVE_SCANS.into(),
                    key: active_scan_key(&job.asset_id, &job.profile),
                });
            }
            Ok(d)
        })
        .await?;
        Ok(())
    }

    pub async fn cancel_scan(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
    ) -> Result<(), ServiceError> {
        self.on_scan(meta, org_id, id, ScanJob::cancel).await
    }

    pub async fn delete_scan(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
    ) -> Result<(), ServiceError> {
        self.on_scan(meta, org_id, id, ScanJob::delete).await?;
        // Its findings left the read models with it.
        let (_, job) = self.load::<ScanJob>(org_id, &scan_stream(id)).await?;
        self.refresh_risk(meta, org_id, [job.asset_id]).await;
        Ok(())
    }

    /// Announce the risk of `assets` where their findings moved it (`risk.changed`). Runs once
    /// the change committed, from the read models it updated; the change stands whatever
    /// happens here, and the next change of the asset's findings announces the score anew.
    async fn refresh_risk(
        &self,
        meta: &EventMeta,
        org_id: &str,
        assets: impl IntoIterator<Item = String>,
    ) {
        let assets: std::collections::BTreeSet<String> = assets.into_iter().collect();
        for asset in assets {
            let stream = risk_stream(&asset);
            let announced = self
                .execute(org_id, meta, || async {
                    let (v, risk) = self.load::<AssetRisk>(org_id, &stream).await?;
                    let breakdown = self.read.unresolved_by_severity(org_id, &asset).await?;
                    Ok(Decision::one(
                        stream.clone(),
                        v,
                        risk.observe(&asset, &breakdown),
                    ))
                })
                .await;
            if let Err(e) = announced {
                tracing::warn!(error = %e, asset = %asset, "risk.changed not recorded");
            }
        }
    }

    /// Record results (of any scanner) under a scan job of the organization: one finding per
    /// deduplication key, new, detected again, or reopened.
    pub async fn import_results(
        &self,
        meta: &EventMeta,
        org_id: &str,
        scan_job_id: &str,
        detections: &[Detection],
    ) -> Result<Imported, ServiceError> {
        let (_, job) = self
            .load::<ScanJob>(org_id, &scan_stream(scan_job_id))
            .await?;
        job.require()?;
        let imported = self
            .record_detections(meta, org_id, scan_job_id, &job, None, detections)
            .await?;
        self.refresh_risk(meta, org_id, [job.asset_id]).await;
        Ok(imported)
    }

    /// A worker takes a queued job, or a running one whose worker died: the job and its asset,
    /// or None when there is nothing to run. A job whose asset was removed fails.
    pub async fn start_scan(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        worker_id: &str,
    ) -> Result<Option<(ScanJob, Asset)>, ServiceError> {
        let stream = scan_stream(id);
        let (_, job) = self.load::<ScanJob>(org_id, &stream).await?;
        if job.require().is_err() || !job.status.active() {
            return Ok(None);
        }
        let (_, asset) = self
            .load::<Asset>(org_id, &asset_stream(&job.asset_id))
            .await?;
        if !asset.live() {
            self.fail_scan(meta, org_id, id, "the asset was removed")
                .await?;
            return Ok(None);
        }
        match self.on_scan(meta, org_id, id, |j| j.start(worker_id)).await {
            Err(ServiceError::Domain(
                DomainError::Conflict { .. } | DomainError::NotFound { .. },
            )) => return Ok(None),
            r => r?,
        }
        let (_, job) = self.load::<ScanJob>(org_id, &stream).await?;
        Ok(Some((job, asset)))
    }

    /// Progress of a running job; false once it no longer runs (cancelled, deleted, ended), so
    /// the worker stops.
    pub async fn scan_progress(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        progress: u8,
        stage: &str,
    ) -> Result<bool, ServiceError> {
        let running = std::sync::atomic::AtomicBool::new(false);
        let recorded = self
            .on_scan(meta, org_id, id, |j| {
                running.store(j.status == ScanStatus::Running, Ordering::Relaxed);
                j.progress(progress, stage)
            })
            .await;
        match recorded {
            Err(ServiceError::Domain(DomainError::NotFound { .. })) => Ok(false),
            r => r.map(|()| running.load(Ordering::Relaxed)),
        }
    }

    pub async fn fail_scan(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        self.on_scan(meta, org_id, id, |j| j.fail(reason)).await
    }

    /// The scanner finished: record its detections, then complete the job exactly once, in the
    /// same append resolving the findings its profile detected before on the ports it tried
    /// and did not detect now, and raising the alerts of the asset's monitor. A second report (a retried worker) records nothing.
    pub async fn complete_scan(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        detections: &[Detection],
        observed: Observed,
        ports: &[u16],
    ) -> Result<(), ServiceError> {
        let stream = scan_stream(id);
        let (_, job) = self.load::<ScanJob>(org_id, &stream).await?;
        if job.require().is_err() || job.status != ScanStatus::Running {
            return Ok(());
        }
        self.record_detections(meta, org_id, id, &job, Some(&job.profile), detections)
            .await?;
        let counts = count_severities(detections);
        self.execute(org_id, meta, || async {
            let (v, job) = self.load::<ScanJob>(org_id, &stream).await?;
            let events = job.complete(counts.clone(), observed.clone())?;
            let mut d = Decision::one(stream.clone(), v, events);
            if d.is_empty() {
                return Ok(d);
            }
            d.constraints.push(Constraint::Release {
                scope: ACTIVE_SCANS.into(),
                key: active_scan_key(&job.asset_id, &job.profile),
            });
            for finding in self.read.unresolved_findings(org_id, &job.asset_id).await? {
                let fs = finding_stream(&finding);
                let (fv, f) = self.load::<Finding>(org_id, &fs).await?;
                let events = f.auto_resolve(id, &job.profile, ports);
                if !events.is_empty() {
                    d.streams.push(StreamAppend {
                        stream_id: fs,
                        expected_version: fv,
                        events,
                    });
                }
            }
            d.streams
                .extend(self.alerts_for(org_id, &job, &observed).await?);
            Ok(d)
        })
        .await?;
        self.refresh_risk(meta, org_id, [job.asset_id]).await;
        Ok(())
    }

    /// Detections of `job` (`profile` for the built-in scanner, None for imports).
    async fn record_detections(
        &self,
        meta: &EventMeta,
        org_id: &str,
        scan_job_id: &str,
        job: &ScanJob,
        profile: Option<&str>,
        detections: &[Detection],
    ) -> Result<Imported, ServiceError> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<(String, &Detection)> = detections
            .iter()
            .map(|d| {
                let id = finding_id(
                    org_id,
                    &job.asset_id,
                    d.template_id.trim(),
                    d.matched_at.trim(),
                    d.matcher_name.trim(),
                );
                (id, d)
            })
            .filter(|(id, _)| seen.insert(id.clone()))
            .collect();
        let mut outcome = Imported::default();
        for chunk in unique.chunks(IMPORT_CHUNK) {
            // The decision of the attempt that commits is the one that counts.
            let last = std::sync::Mutex::new(Imported::default());
            self.execute(org_id, meta, || async {
                let mut counted = Imported::default();
                let mut d = Decision {
                    streams: vec![],
                    constraints: vec![],
                };
                for (id, detection) in chunk {
                    let stream = finding_stream(id);
                    let (v, f) = self.load::<Finding>(org_id, &stream).await?;
                    let events = f.detect(id, &job.asset_id, scan_job_id, profile, detection)?;
                    match events.first() {
                        Some(Event::FindingNew(_)) => counted.new += 1,
                        Some(Event::FindingReopened(_)) => counted.reopened += 1,
                        Some(_) => counted.redetected += 1,
                        None => counted.unchanged += 1,
                    }
                    if !events.is_empty() {
                        d.streams.push(StreamAppend {
                            stream_id: stream,
                            expected_version: v,
                            events,
                        });
                    }
                }
                *last.lock().expect("counts") = counted;
                Ok(d)
            })
            .await?;
            let counted = last.into_inner().expect("counts");
            outcome.new += counted.new;
            outcome.redetected += counted.redetected;
            outcome.reopened += counted.reopened;
            outcome.unchanged += counted.unchanged;
        }
        Ok(outcome)
    }

    /// One status for many findings, all or nothing: one event per finding that changes, in one
    /// append. Ids outside the organization are not found.
    pub async fn bulk_finding_status(
        &self,
        meta: &EventMeta,
        org_id: &str,
        ids: &[String],
        status: &str,
        notes: Option<&str>,
    ) -> Result<usize, ServiceError> {
        let changed = std::sync::Mutex::new(0);
        let assets = std::sync::Mutex::new(vec![]);
        self.execute(org_id, meta, || async {
            let mut d = Decision {
                streams: vec![],
                constraints: vec![],
            };
            let mut errors = vec![];
            let mut touched = vec![];
            for (index, id) in ids.iter().enumerate() {
                let stream = finding_stream(id);
                let (v, f) = self.load::<Finding>(org_id, &stream).await?;
                let fail = |code: &'static str, error: String| ItemError {
                    index,
                    value: Some(id.clone()),
                    code,
                    error,
                    existing_id: None,
                };
                match f.change_status(status, notes) {
                    Ok(events) if !events.is_empty() => {
                        touched.push(f.asset_id.clone());
                        d.streams.push(StreamAppend {
                            stream_id: stream,
                            expected_version: v,
                            events,
                        })
                    }
                    Ok(_) => {}
                    Err(DomainError::NotFound { .. }) => {
                        errors.push(fail("NOT_FOUND", format!("id: finding {id} not found")))
                    }
                    Err(e) => errors.push(fail("VALIDATION_ERROR", e.to_string())),
                }
            }
            if !errors.is_empty() {
                return Err(DomainError::Items(errors).into());
            }
            *changed.lock().expect("count") = d.streams.len();
            *assets.lock().expect("assets") = touched;
            Ok(d)
        })
        .await?;
        let assets = assets.into_inner().expect("assets");
        self.refresh_risk(meta, org_id, assets).await;
        Ok(changed.into_inner().expect("count"))
    }

    /// Triage a finding: status (with notes), assignee, notes.
    pub async fn triage_finding(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        status: Option<&str>,
        assignee: Option<&str>,
        notes: Option<&str>,
    ) -> Result<(), ServiceError> {
        let stream = finding_stream(id);
        self.on_stream(org_id, meta, stream.clone(), |f: &Finding| {
            let mut events = match status {
                Some(s) => f.change_status(s, notes)?,
                None => vec![],
            };
            // Notes travel with a status change; otherwise they are an update of their own.
            let notes = if events.is_empty() { notes } else { None };
            events.extend(f.update(assignee, notes)?);
            Ok(events)
        })
        .await?;
        if status.is_some() {
            let (_, f) = self.load::<Finding>(org_id, &stream).await?;
            self.refresh_risk(meta, org_id, [f.asset_id]).await;
        }
        Ok(())
    }

    /// A request by a known key was refused (`access.denied`), on a stream of its own so that
    /// denials never contend with each other.
    pub async fn record_denial(
        &self,
        meta: &EventMeta,
        org_id: &str,
        denied: AccessDenied,
    ) -> Result<(), ServiceError> {
        let stream = format!("access-{}", new_id());
        let events = vec![Event::AccessDenied(denied)];
        self.execute(org_id, meta, || async {
            Ok(Decision::one(stream.clone(), 0, events.clone()))
        })
        .await?;
        Ok(())
    }

    /// Delivery gave up on an endpoint (`endpoint.disabled`); `failing_since` is RFC 3339.
    pub async fn disable_webhook(
        &self,
        meta: &EventMeta,
        org_id: &str,
        id: &str,
        failing_since: &str,
        reason: &str,
    ) -> Result<(), ServiceError> {
        self.on_stream(org_id, meta, webhook_stream(id), |w: &Webhook| {
            w.disable(failing_since, reason)
        })
        .await
    }

    pub fn secrets(&self) -> &WebhookSecrets {
        &self.secrets
    }

    /// Woken after every append of this process, so the embedded fan-out need not poll.
    pub fn committed(&self) -> &Arc<Notify> {
        &self.committed
    }
}
