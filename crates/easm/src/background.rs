//! What runs beside the API in `serve`, and alone in `deliver`: the outbox relay, fan-out, the
//! delivery worker, the job workers (scans, discovery) and the monitor scheduler.

use crate::config::{DeliveryArgs, ScanArgs};
use anyhow::Result;
use easm_api::AppState;
use easm_bus::Relay;
use easm_delivery::{Fanout, OutboxWakes, Worker};
use easm_scanner::discovery_jobs::DiscoveryJobs;
use easm_scanner::scan_jobs::ScanJobs;
use easm_scanner::scheduler::run_monitors;
use easm_scanner::worker::{Worker as JobWorker, WorkerConfig};
use easm_store::{relay_commits, Lease};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The work beside the API: the outbox relay (NATS mode; leased, so one process relays), fan-out
/// of events into the delivery queue, the delivery worker, and the scan workers.
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    pub async fn start(
        state: &AppState,
        args: &DeliveryArgs,
        scan: &ScanArgs,
    ) -> Result<Background> {
        let db = state.db.clone();
        let app = state.commands.clone();
        let holder = format!(
            "easm-{}-{}",
            std::process::id(),
            easm_app::new_id::<String>()
        );
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let until_stop = || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let worker = Worker::new(
            app.clone(),
            db.clone(),
            args.delivery(&holder),
            state.delivery_wake.clone(),
        )?;
        let fanout = Fanout::new(
            db.clone(),
            app.projector().clone(),
            worker.handoff(),
            args.rendering(),
        );
        let every = scan.monitor_interval;
        let scheduler = Lease::new(
            db.clone(),
            "monitor-scheduler",
            holder.clone(),
            (every * 3).max(Duration::from_secs(10)),
        );
        let mut tasks = vec![
            tokio::spawn(worker.run(until_stop())),
            tokio::spawn(run_monitors(app.clone(), scheduler, every, until_stop())),
        ];
        let lease = scan.scan_lease;
        let workers = match scan.scan_workers {
            0 => vec![],
            n => {
                let scan_config = scan.scan().map_err(anyhow::Error::msg)?;
                let discovery = scan.discovery(scan_config.dns.clone());
                let config = WorkerConfig {
                    holder: holder.clone(),
                    lease,
                    poll: Duration::from_millis(500),
                };
                // Each kind has its own slots: a work queue waits for its next message holding
                // one, which must not keep the other kind's jobs waiting.
                let scans = ScanJobs {
                    app: app.clone(),
                    scan: scan_config,
                    holder: holder.clone(),
                };
                let discoveries = DiscoveryJobs {
                    app: app.clone(),
                    config: discovery,
                    holder: holder.clone(),
                };
                vec![
                    JobWorker::new(Arc::new(scans), db.clone(), config.clone(), n),
                    JobWorker::new(Arc::new(discoveries), db.clone(), config, n),
                ]
            }
        };
        // The outbox's drain here takes this process's commits from its feed and is woken,
        // told through the database, by the other processes'.
        let feed = app.commit_feed().clone();
        let told = match args.bus(&holder) {
            Some(_) => feed.arrived().clone(),
            None => Arc::new(tokio::sync::Notify::new()),
        };
        let drains_here = Arc::new(AtomicBool::new(false));
        tasks.push(tokio::spawn(relay_commits(
            db.clone(),
            holder.clone(),
            feed.to_tell().clone(),
            drains_here.clone(),
            told.clone(),
            until_stop(),
        )));
        match args.bus(&holder) {
            Some(bus) => {
                let relay = Relay::connect(db.clone(), bus.clone())
                    .await?
                    .wake_on(feed.arrived().clone(), drains_here);
                tasks.push(tokio::spawn(relay.run(until_stop())));
                for w in workers {
                    // The sweep only takes what the work queue left longer than a lease.
                    tasks.push(tokio::spawn(w.clone().run_queue(lease * 4, until_stop())));
                    tasks.push(tokio::spawn(w.run_jetstream(bus.clone(), until_stop())));
                }
                tasks.push(tokio::spawn(fanout.run_jetstream(bus, until_stop())));
            }
            None => {
                for w in workers {
                    tasks.push(tokio::spawn(w.run_queue(Duration::ZERO, until_stop())));
                }
                tasks.push(tokio::spawn(fanout.run_outbox(
                    db,
                    holder,
                    OutboxWakes {
                        feed,
                        told,
                        drains_here,
                    },
                    args.outbox_poll,
                    until_stop(),
                )));
            }
        }
        Ok(Background { stop, tasks })
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
