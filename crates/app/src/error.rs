//! The command side's one error type: the API maps it to HTTP, the CLI prints it.

use easm_domain::DomainError;
use easm_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused the command (validation, not found, conflict, plan limit).
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every attempt lost a race with another writer of the same streams.
    #[error("the resource changed concurrently {0} times; retry the request")]
    Contention(u32),
}
