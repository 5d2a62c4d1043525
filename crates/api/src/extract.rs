//! Extractors that turn bad input into our JSON errors naming the field, instead of axum's
//! plain-text rejections.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use easm_projections::read::PageRequest;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

/// The most a request body may hold.
pub const MAX_BODY: usize = 1 << 20;

/// A JSON body. Errors name the path of the offending field (`assets[2].type`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::too_large())?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out (action endpoints: `POST .../acknowledge` with or without
/// `{"notes"}`); a body that is sent must parse.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::too_large())?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        // `null` is no body too, as the document states an optional body.
        match json_value(&bytes)? {
            serde_json::Value::Null => Ok(OptionalJson(T::default())),
            value => from_json_object(value).map(OptionalJson),
        }
    }
}

/// JSON Schema's `integer` is any number without a fraction: `45.0` is one, as the document
/// promises, so it reaches integer fields as `45`.
fn integral_numbers_as_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                if f.abs() < 9_007_199_254_740_992.0 {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(not_an_object());
    }
    from_json_object(json_value(bytes)?)
}

fn not_an_object() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "INVALID_JSON",
        "request body must be a JSON object",
    )
}

fn json_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("malformed JSON: {e}"),
        )
    })
}

/// Every body is an object: serde would read a struct from an array of its fields too.
fn from_json_object<T: DeserializeOwned>(mut value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(not_an_object());
    }
    integral_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                strip_position(&inner.to_string()),
            )
        } else {
            ApiError::bad_request(
                &path,
                format!("{path}: {}", strip_position(&inner.to_string())),
            )
        }
    })
}

/// serde_json appends "at line 1 column 17", which means nothing to an API client.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Query parameters, with errors naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(q));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::bad_request(&path, format!("query parameter {path}: {}", e.into_inner()))
            })
    }
}

fn form_urlencoded_parse(q: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(q.as_bytes())
}

/// `page` (1-based) and `perPage` (1 to 100; larger asks get 100).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number (default 1).
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub page: Option<i64>,
    /// Items per page (default 50, at most 100).
    #[param(minimum = 1, maximum = 9223372036854775807_i64)]
    pub per_page: Option<i64>,
}

impl PageParams {
    pub fn resolve(&self) -> Result<PageRequest, ApiError> {
        page_request(self.page, self.per_page)
    }
}

/// Shared by every list query (serde's `flatten` loses number parsing in query strings).
pub fn page_request(page: Option<i64>, per_page: Option<i64>) -> Result<PageRequest, ApiError> {
    {
        let page = page.unwrap_or(1);
        if page < 1 {
            return Err(ApiError::bad_request("page", "page: must be 1 or more"));
        }
        let per_page = per_page.unwrap_or(50);
        if per_page < 1 {
            return Err(ApiError::bad_request(
                "perPage",
                "perPage: must be 1 or more",
            ));
        }
        Ok(PageRequest {
            page,
            per_page: per_page.min(100),
        })
    }
}
