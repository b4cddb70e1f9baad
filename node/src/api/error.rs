//! Errors become HTTP statuses and Connect error bodies here, and only here:
//! `{"code":"invalid_argument","message":"..."}` with the status Connect assigns the code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// Seconds a client should wait before retrying an overloaded node.
const RETRY_AFTER_SECS: &str = "5";

impl Error {
    /// The Connect code and HTTP status of this error.
    pub fn code(&self) -> (&'static str, StatusCode) {
        match self {
            Error::Storage(e) if e.is_client_error() => {
                ("invalid_argument", StatusCode::BAD_REQUEST)
            }
            Error::Storage(e) if e.is_overload() => {
                ("unavailable", StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::LogFull { .. } => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
            Error::ShuttingDown | Error::NotLeader(_) | Error::Raft(_) => {
                ("unavailable", StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::BadRequest(_) => ("invalid_argument", StatusCode::BAD_REQUEST),
            Error::TooLarge { .. } => ("resource_exhausted", StatusCode::PAYLOAD_TOO_LARGE),
            Error::UnsupportedMediaType(_) => {
                ("invalid_argument", StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            Error::Query(q) => match q {
                firn_query::Error::Selector { .. }
                | firn_query::Error::InvalidQuery(_)
                | firn_query::Error::ReadOnly(_)
                | firn_query::Error::TooManyRows { .. } => {
                    ("invalid_argument", StatusCode::BAD_REQUEST)
                }
                firn_query::Error::MemoryLimit { .. } => {
                    ("resource_exhausted", StatusCode::TOO_MANY_REQUESTS)
                }
                firn_query::Error::Timeout { .. } => {
                    ("deadline_exceeded", StatusCode::GATEWAY_TIMEOUT)
                }
                _ => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            },
            _ => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (code, status) = self.code();
        let message = error_chain(&self);
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %message, "request failed");
        }
        let body = serde_json::json!({ "code": code, "message": message });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// The error and its sources, so the message names the field that was wrong.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
