//! The event bus. Every event is committed with an outbox row; the relay publishes those rows to
//! NATS JetStream in log order and deletes them once JetStream has acknowledged them. The event
//! id travels as `Nats-Msg-Id`, so a relay that dies between publishing and deleting causes no
//! duplicate: JetStream drops the repeat within its duplicate window. A database lease keeps
//! exactly one relay running among several `easm` processes.

mod relay;

pub use relay::{
    ensure_stream, jetstream, nats, subject, BusConfig, BusError, Reachability, Relay,
};
