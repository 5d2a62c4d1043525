//! Integration tests: the real server on a random port, spoken to over HTTP, on SQLite and on
//! PostgreSQL (a fresh database per test). One test binary keeps link time down.

mod helpers;

mod assets;
mod audit;
mod audit_webhook;
mod auth;
mod bus;
mod cli;
mod conventions;
mod delivery;
mod discovery;
mod dns;
mod event_log;
mod faults;
mod findings;
mod findings_at_scale;
mod group_commit;
mod groups;
mod mcp;
mod members;
mod monitor_alerts;
mod monitors;
mod operability;
mod rebuild;
mod receiver;
mod scan_results;
mod scan_schedules;
mod scanner;
mod scans;
mod siem;
mod siem_servers;
mod targets;
mod traces;
mod webhooks;
