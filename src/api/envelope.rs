//! The answer envelope and error codes of Exotel's v2 API, so a partner's existing
//! client reads callflow's answers unchanged:
//! `{request_id, method, http_code, response: {code, error_data, status, data}}`.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API error: its HTTP status, Exotel's code, and what to tell the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// Exotel's error code (1000 not found, 1001 missing, 1002 invalid, …).
    pub code: u32,
    /// A short message.
    pub message: String,
    /// What exactly is wrong.
    pub description: String,
    /// Seconds to wait before trying again (a 429's Retry-After).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: &str, description: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.to_string(),
            description: description.into(),
            retry_after: None,
        }
    }

    /// 1012: over a limit (the account's request rate, a trunk's or a carrier's
    /// channels or calls per second); try again after `retry_after` seconds.
    pub fn too_many(why: impl Into<String>, retry_after: u32) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                1012,
                "Too many requests",
                why,
            )
        }
    }

    /// 503: a service the request needs is down.
    pub fn unavailable(why: impl Into<String>, retry_after: u32) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                1013,
                "Service unavailable",
                why,
            )
        }
    }

    /// 1000: no such resource (also another account's).
    pub fn not_found(what: &str) -> ApiError {
        Self::new(
            StatusCode::NOT_FOUND,
            1000,
            "Not found",
            format!("{what} does not exist"),
        )
    }

    /// 1001: a required parameter is missing.
    pub fn missing(field: &str) -> ApiError {
        Self::new(
            StatusCode::BAD_REQUEST,
            1001,
            "Missing parameter",
            format!("'{field}' is required"),
        )
    }

    /// 1002: a parameter is invalid, and why.
    pub fn invalid(field: &str, why: &str) -> ApiError {
        Self::new(
            StatusCode::BAD_REQUEST,
            1002,
            "Invalid parameter",
            format!("'{field}' {why}"),
        )
    }

    /// 403: the request is refused by a limit set for the account (a toll-fraud
    /// limit), and why.
    pub fn forbidden(why: &str) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, 1013, "Forbidden", why)
    }

    /// 1007: the body is not the JSON this endpoint takes.
    pub fn bad_body(why: &str) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, 1007, "Invalid request body", why)
    }

    /// 1008: the resource exists already.
    pub fn duplicate(what: &str) -> ApiError {
        Self::new(
            StatusCode::CONFLICT,
            1008,
            "Duplicate resource",
            format!("{what} already exists"),
        )
    }

    /// 409 for what `callflow.yaml` defines: it changes only in the file.
    pub fn from_file(what: &str) -> ApiError {
        Self::new(
            StatusCode::CONFLICT,
            1008,
            "Defined in the configuration file",
            format!("{what} is defined in callflow.yaml; change it there"),
        )
    }

    /// 1010: wrong or missing credentials.
    pub fn unauthorized() -> ApiError {
        Self::new(
            StatusCode::UNAUTHORIZED,
            1010,
            "Authentication failed",
            "give the account's API key and token with HTTP Basic authentication",
        )
    }

    /// 1011: the body is not JSON.
    pub fn content_type() -> ApiError {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            1011,
            "Unsupported content type",
            "send the body as application/json",
        )
    }

    /// An internal failure (the store): said without its details, which are logged.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::warn!(error = %e, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            1005,
            "Internal error",
            "the request could not be completed; try again",
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        match e {
            crate::store::StoreError::Duplicate(what) => ApiError::duplicate(&what),
            other => ApiError::internal(other),
        }
    }
}

/// A request id for the envelope.
fn request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The envelope around `data` (or an error).
pub fn envelope(
    method: &Method,
    status: StatusCode,
    data: Value,
    error: Option<&ApiError>,
) -> Value {
    json!({
        "request_id": request_id(),
        "method": method.as_str(),
        "http_code": status.as_u16(),
        "response": {
            "code": status.as_u16(),
            "error_data": error.map(|e| json!({ "code": e.code, "message": e.message, "description": e.description })),
            "status": if error.is_some() { "failure" } else { "success" },
            "data": data,
        }
    })
}

/// A success answer.
pub fn ok(method: &Method, status: StatusCode, data: Value) -> Response {
    (status, axum::Json(envelope(method, status, data, None))).into_response()
}

/// An error answer for a request with `method`.
pub fn fail(method: &Method, e: &ApiError) -> Response {
    let mut r = (
        e.status,
        axum::Json(envelope(method, e.status, Value::Null, Some(e))),
    )
        .into_response();
    with_retry_after(&mut r, e);
    r
}

/// Adds a 429's Retry-After to `r`.
pub fn with_retry_after(r: &mut Response, e: &ApiError) {
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
}
