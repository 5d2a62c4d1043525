//! One module per read model: its row, the events that change it, how it is stored, its API
//! shapes and its queries.

pub mod alerts;
pub mod assets;
pub mod dashboard;
pub mod discovery;
pub mod finding_totals;
pub mod findings;
pub mod groups;
pub mod keys;
pub mod monitors;
pub mod orgs;
pub mod scan_jobs;
pub mod subjects;
pub mod users;
pub mod webhooks;
