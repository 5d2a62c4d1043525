//! Webhook delivery. This part is what every request carries: the Standard Webhooks signature
//! and the versioned payload, so receivers can verify with the existing libraries.

mod payload;
mod signature;

pub use payload::{message_id, payload, PAYLOAD_VERSION};
pub use signature::{sign, SignError};
