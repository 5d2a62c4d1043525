//! `Idempotency-Key` on POST: the same key with the same request answers the first response and
//! appends nothing; with a different request, 422.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::MAX_BODY;
use crate::AppState;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use easm_store::Claim;
use sha2::{Digest, Sha256};

pub async fn idempotency(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get("idempotency-key").cloned() else {
        return next.run(req).await;
    };
    let Some(caller) = req.extensions().get::<Caller>().cloned() else {
        return next.run(req).await;
    };
    match handle(&app, &caller, key, req, next).await {
        Ok(r) | Err(r) => r,
    }
}

async fn handle(
    app: &AppState,
    caller: &Caller,
    key: HeaderValue,
    req: Request,
    next: Next,
) -> Result<Response, Response> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible characters",
            )
            .into_response()
        })?
        .to_string();
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large().into_response())?;
    let fingerprint = fingerprint(&parts.method, &parts.uri, &bytes);
    let store = &app.idempotency;
    let fail = |e: easm_store::StoreError| ApiError::from(e).into_response();
    match store
        .claim(&caller.org_id, &key, &fingerprint)
        .await
        .map_err(fail)?
    {
        Claim::Replay { status, body } => Ok(replayed(status, body)),
        Claim::Mismatch => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was used with a different request",
        )
        .into_response()),
        Claim::InProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_KEY_IN_PROGRESS",
            "a request with this Idempotency-Key is still being processed",
        )
        .into_response()),
        Claim::New => {
            let res = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let (parts, body) = res.into_parts();
            let bytes = match to_bytes(body, usize::MAX).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(error = %e, "could not read the answer to keep it");
                    if let Err(e) = store.abandon(&caller.org_id, &key).await {
                        tracing::error!(error = %e, "could not release idempotency key");
                    }
                    return Err(ApiError::internal().into_response());
                }
            };
            let outcome = if parts.status.is_server_error() {
                store.abandon(&caller.org_id, &key).await
            } else {
                let text = String::from_utf8_lossy(&bytes);
                store
                    .complete(&caller.org_id, &key, parts.status.as_u16(), &text)
                    .await
            };
            if let Err(e) = outcome {
                tracing::error!(error = %e, "could not record idempotency key");
            }
            Ok(Response::from_parts(parts, Body::from(bytes)))
        }
    }
}

/// What makes two requests the same request: method, path with query, body.
fn fingerprint(method: &axum::http::Method, uri: &axum::http::Uri, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(method.as_str());
    h.update(b" ");
    h.update(uri.to_string());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

/// The first answer again, marked as a replay.
fn replayed(status: u16, body: String) -> Response {
    let mut res = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    res.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    res
}
