//! What an attempt needs to know about its endpoint, read at most [`ENDPOINT_TTL`] ago: a change
//! (disabled, deleted, new secret, new options or credentials) reaches deliveries within that
//! time.

use crate::sender::Route;
use easm_app::App;
use easm_events::{EndpointOptions, OrgId, WebhookId};
use easm_store::StoreError;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ENDPOINT_TTL: Duration = Duration::from_secs(1);

/// An endpoint as delivery uses it.
pub struct Target {
    pub url: String,
    pub enabled: bool,
    /// Signing secrets, newest first.
    pub secrets: Vec<String>,
    pub options: EndpointOptions,
    /// Its own request headers, with their values.
    pub headers: Vec<(String, String)>,
    /// Its write-only values by name (`token`, `apiKey`, `headers.<Name>`, `tls.clientKey`).
    pub credentials: BTreeMap<String, String>,
    pub route: Route,
}

/// An endpoint as read at a time (None: deleted).
type Cached = (Instant, Option<Arc<Target>>);

#[derive(Default)]
pub struct Endpoints {
    cache: Mutex<HashMap<WebhookId, Cached>>,
}

impl Endpoints {
    pub async fn get(
        &self,
        app: &App,
        org_id: &OrgId,
        webhook_id: &WebhookId,
    ) -> Result<Option<Arc<Target>>, StoreError> {
        if let Some((at, e)) = self.cache.lock().expect("endpoints").get(webhook_id) {
            if at.elapsed() < ENDPOINT_TTL {
                return Ok(e.clone());
            }
        }
        let e = match app.read().endpoint(org_id, webhook_id).await? {
            None => None,
            Some(hook) => {
                // Plain webhooks have no write-only values: no need to look.
                let credentials = if hook.options.is_plain() {
                    BTreeMap::new()
                } else {
                    app.credentials().all(webhook_id).await?
                };
                let headers = hook
                    .options
                    .headers
                    .iter()
                    .filter_map(|h| {
                        let v = credentials.get(&format!("headers.{h}"))?;
                        Some((h.clone(), v.clone()))
                    })
                    .collect();
                let route = Route::new(
                    hook.options.tls.as_ref(),
                    credentials.get("tls.clientKey").map(String::as_str),
                    hook.options.proxy.as_deref(),
                );
                Some(Arc::new(Target {
                    url: hook.url,
                    enabled: hook.enabled,
                    secrets: app.secrets().active(webhook_id).await?,
                    options: hook.options,
                    headers,
                    credentials,
                    route,
                }))
            }
        };
        let mut cache = self.cache.lock().expect("endpoints");
        cache.retain(|_, (at, _)| at.elapsed() < ENDPOINT_TTL);
        cache.insert(webhook_id.clone(), (Instant::now(), e.clone()));
        Ok(e)
    }
}
