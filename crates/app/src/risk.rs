//! An asset's announced risk (`risk.changed`), recorded after its findings changed.

use crate::execute::Decision;
use crate::streams::risk_stream;
use crate::App;
use easm_domain::AssetRisk;
use easm_events::{AssetId, EventMeta, OrgId};
use std::collections::BTreeSet;

impl App {
    /// Announce the risk of `assets` where their findings moved it. Runs once the change
    /// committed, from the read models it updated; the change stands whatever happens here, and
    /// the next change of the asset's findings announces the score anew.
    pub(crate) async fn refresh_risk(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        assets: impl IntoIterator<Item = AssetId>,
    ) {
        let assets: BTreeSet<AssetId> = assets.into_iter().collect();
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
}
