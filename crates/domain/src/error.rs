/// Why a command was refused. These are answers to the caller, never infrastructure failures.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    #[error("{message}")]
    Conflict {
        message: String,
        existing_id: Option<String>,
    },
    #[error("plan limit reached: {limit} (max {max} on plan {plan})")]
    PlanLimit {
        limit: &'static str,
        max: u64,
        plan: String,
    },
    /// A bulk command in which some items failed: nothing is applied.
    #[error("{} item(s) failed", .0.len())]
    Items(Vec<ItemError>),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub code: &'static str,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
}

impl DomainError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }
}
