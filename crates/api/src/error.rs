//! The API's one error type, mapped to HTTP once: `{"error": "...", "code": "..."}` plus, where
//! it helps, the offending `field`, the `existingId` of a duplicate, or per-item `items`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use easm_app::CommandError;
use easm_domain::{DomainError, ItemError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// Stable machine-readable code, e.g. `VALIDATION_ERROR`, `NOT_FOUND`, `PLAN_LIMIT`.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub items: Option<Vec<ItemError>>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Boxed: errors travel in every `Result` of the API and should stay small.
    pub body: Box<ErrorBody>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, error: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody {
                error: error.into(),
                code: code.into(),
                field: None,
                existing_id: None,
                items: None,
            }),
            retry_after: None,
        }
    }

    pub fn bad_request(field: &str, error: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", error);
        e.body.field = Some(field.into());
        e
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(msg: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", msg)
    }

    pub fn forbidden(msg: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", msg)
    }

    pub fn internal() -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; it has been logged",
        )
    }

    pub fn too_large() -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body is larger than 1 MiB",
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Validation { field, message } => {
                ApiError::bad_request(&field, format!("{field}: {message}"))
            }
            DomainError::NotFound { resource } => ApiError::not_found(resource),
            DomainError::Conflict {
                message,
                existing_id,
            } => {
                let mut e = ApiError::new(StatusCode::CONFLICT, "CONFLICT", message);
                e.body.existing_id = existing_id;
                e
            }
            e @ DomainError::PlanLimit { .. } => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "PLAN_LIMIT", e.to_string())
            }
            DomainError::Items(items) => {
                let has = |code: &str| items.iter().any(|i| i.code == code);
                let (status, code) = if has("VALIDATION_ERROR") {
                    (StatusCode::BAD_REQUEST, "VALIDATION_ERROR")
                } else if has("NOT_FOUND") {
                    (StatusCode::NOT_FOUND, "NOT_FOUND")
                } else {
                    (StatusCode::CONFLICT, items[0].code)
                };
                let first = &items[0];
                let message = if items.len() == 1 {
                    first.error.clone()
                } else {
                    format!("{} items failed; nothing was applied", items.len())
                };
                let mut e = ApiError::new(status, code, message);
                if items.len() == 1 {
                    e.body.existing_id = first.existing_id.clone();
                    e.body.field = first.error.split(':').next().map(str::to_string);
                }
                e.body.items = Some(items);
                e
            }
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::Store(s) => s.into(),
            e @ CommandError::Contention(_) => ApiError::new(
                StatusCode::CONFLICT,
                "CONCURRENT_MODIFICATION",
                e.to_string(),
            ),
        }
    }
}

impl From<easm_store::StoreError> for ApiError {
    fn from(e: easm_store::StoreError) -> Self {
        use easm_store::Unavailable;
        let Some(why) = e.unavailable() else {
            tracing::error!(error = %e, "store error");
            return ApiError::internal();
        };
        tracing::warn!(error = %e, "store unavailable");
        // 503 with Retry-After: the request was not applied (or, for a lost connection, its
        // outcome is unknown) and the same request is safe to send again.
        let (code, message, retry_after) = match why {
            Unavailable::Busy => ("UNAVAILABLE", "the database is busy; retry shortly", 1),
            Unavailable::Disconnected => (
                "UNAVAILABLE",
                "the database cannot be reached; retry shortly",
                1,
            ),
            Unavailable::StorageFull => (
                "STORAGE_FULL",
                "the database's disk is full: nothing was written; reads still work",
                30,
            ),
        };
        let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        err.retry_after = Some(retry_after);
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body)).into_response();
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
