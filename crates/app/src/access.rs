//! Refused requests of known keys, recorded for auditors (`access.denied`).

use crate::streams::access_stream;
use crate::{new_id, App, CommandError};
use easm_events::{AccessDenied, Event, EventMeta, OrgId};

impl App {
    /// Each denial goes on a stream of its own, so denials never contend with each other.
    pub async fn record_denial(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        denied: AccessDenied,
    ) -> Result<(), CommandError> {
        let stream = access_stream(&new_id::<String>());
        self.create(org_id, meta, stream, vec![Event::AccessDenied(denied)])
            .await?;
        Ok(())
    }
}
