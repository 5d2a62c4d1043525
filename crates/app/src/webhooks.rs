//! Webhook endpoints, the organization's audit log webhook among them: created with a signing
//! secret, changed, rotated, deleted, and disabled by delivery when every attempt fails.

use crate::credentials::webhook_secret;
use crate::execute::Decision;
use crate::streams::webhook_stream;
use crate::{new_id, App, CommandError};
use easm_domain::{audit_webhook_id, DomainError, Webhook, WebhookSpec};
use easm_events::{EventMeta, OrgId, WebhookId};
use std::time::Duration;

/// How long a replaced signing secret keeps signing, so receivers can switch over.
pub const SECRET_GRACE: Duration = Duration::from_secs(24 * 3600);

impl App {
    /// Create a webhook endpoint; returns its id and signing secret (shown once).
    pub async fn create_webhook(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<(WebhookId, String), CommandError> {
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
        org_id: &OrgId,
        id: &WebhookId,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<String, CommandError> {
        let (events, credentials) = Webhook::create(id, spec, allow_private)?;
        let secret = webhook_secret();
        // The secret and the write-only values are stored before the event: a failed append
        // leaves only unused ones.
        self.secrets
            .rotate_in(id, &secret, easm_store::now_micros())
            .await?;
        self.credentials.forget(id).await?;
        self.credentials.apply(id, &credentials).await?;
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
        org_id: &OrgId,
        url: Option<String>,
        enabled: Option<bool>,
        regenerate: bool,
        allow_private: bool,
    ) -> Result<Option<String>, CommandError> {
        let id = audit_webhook_id(org_id);
        let (_, current) = self.load::<Webhook>(org_id, &webhook_stream(&id)).await?;
        let spec = WebhookSpec {
            url,
            events: Some(vec!["audit.*".into()]),
            description: Some("audit log".into()),
            enabled,
            delivery: Default::default(),
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
        org_id: &OrgId,
        id: &WebhookId,
        spec: &WebhookSpec,
        allow_private: bool,
    ) -> Result<(), CommandError> {
        let stream = webhook_stream(id);
        self.execute(org_id, meta, || async {
            let (v, w) = self.load::<Webhook>(org_id, &stream).await?;
            let (events, credentials) = w.update(spec, allow_private)?;
            // Stored before the event, as at creation; a retried decision stores them again.
            self.credentials.apply(id, &credentials).await?;
            Ok(Decision::one(stream.clone(), v, events))
        })
        .await?;
        Ok(())
    }

    /// Its secrets go with it; its delivery log stays.
    pub async fn delete_webhook(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &WebhookId,
    ) -> Result<(), CommandError> {
        self.on_stream(org_id, meta, webhook_stream(id), Webhook::delete)
            .await?;
        self.secrets.forget(id).await?;
        self.credentials.forget(id).await?;
        Ok(())
    }

    /// Replace the signing secret; the previous one keeps signing for [`SECRET_GRACE`].
    pub async fn rotate_webhook_secret(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &WebhookId,
    ) -> Result<String, CommandError> {
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
        let secret = webhook_secret();
        self.secrets
            .rotate_in(id, &secret, until.timestamp_micros())
            .await?;
        let until = easm_events::format_timestamp(&until);
        self.on_stream(org_id, meta, stream, |w: &Webhook| w.rotate_secret(&until))
            .await?;
        Ok(secret)
    }

    /// Delivery gave up on an endpoint (`endpoint.disabled`); `failing_since` is RFC 3339.
    pub async fn disable_webhook(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        id: &WebhookId,
        failing_since: &str,
        reason: &str,
    ) -> Result<(), CommandError> {
        self.on_stream(org_id, meta, webhook_stream(id), |w: &Webhook| {
            w.disable(failing_since, reason)
        })
        .await?;
        Ok(())
    }
}
