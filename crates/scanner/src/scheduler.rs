//! The monitor scheduler: runs the monitors that are due, as the system actor `scheduler`.

use easm_app::{new_id, App};
use easm_events::{Actor, EventMeta};
use easm_store::Lease;
use std::future::Future;
use std::time::Duration;

/// Every `every`, run what is due. One process at a time holds the scheduler's lease (another
/// takes over when it dies); even without it, a run is recorded on the monitor's stream, so one
/// due run is never recorded twice.
pub async fn run_monitors(app: App, lease: Lease, every: Duration, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        match lease.acquire().await {
            Ok(true) => {
                let meta = EventMeta::new(Actor::system_part("scheduler"), new_id::<String>());
                if let Err(e) = app.run_due_monitors(&meta).await {
                    tracing::warn!(error = %e, "monitor scheduling failed; retrying");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "monitor scheduler lease unavailable"),
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "monitor scheduler lease not released; it lapses");
    }
}
