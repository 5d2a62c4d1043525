//! Read models: projectors fold the event log into tables the API queries, and `read` answers
//! those queries. Everything here can be dropped and rebuilt from the log with the same result.

mod projector;
pub mod read;
mod state;

pub use projector::{Projector, Replay};
pub use read::ReadModels;
