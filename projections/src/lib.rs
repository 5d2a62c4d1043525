//! Read models: projectors fold the event log into tables the API queries, and `read` answers
//! those queries. Everything here can be dropped and rebuilt from the log with the same result.

mod models;
mod projector;
pub mod read;
mod replay;
mod state;
mod table;

pub use projector::Projector;
pub use read::ReadModels;
pub use replay::Replay;
