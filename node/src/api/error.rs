//! Errors become statuses here, and only here: a [`Code`] (the status codes Connect and gRPC
//! share) and an HTTP status per error. Plain HTTP and Connect answer with that status and
//! `{"code":"invalid_argument","message":"..."}`; gRPC answers 200 with the code's number in
//! `grpc-status` (see [`crate::api::rpc`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Error;

/// Seconds a client should wait before retrying an overloaded node.
pub const RETRY_AFTER_SECS: &str = "5";

/// The status codes of Connect and gRPC: one set, named in snake case by Connect and numbered
/// by gRPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Canceled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl Code {
    /// The code of a Connect name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Code::Canceled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unavailable,
            Code::DataLoss,
            Code::Unauthenticated,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }

    /// The Connect name, `invalid_argument`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// The gRPC number, for `grpc-status` (0 is OK and has no `Code`).
    pub fn grpc(self) -> u8 {
        match self {
            Code::Canceled => 1,
            Code::Unknown => 2,
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::OutOfRange => 11,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::DataLoss => 15,
            Code::Unauthenticated => 16,
        }
    }
}

impl Error {
    /// The code and HTTP status of this error.
    pub fn code(&self) -> (Code, StatusCode) {
        match self {
            Error::Storage(e) if e.is_limit() => {
                (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS)
            }
            Error::Storage(e) if e.is_client_error() => {
                (Code::InvalidArgument, StatusCode::BAD_REQUEST)
            }
            Error::Storage(e) if e.is_overload() => {
                (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::LogFull { .. } | Error::Overloaded { .. } => {
                (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::ShuttingDown
            | Error::NotLeader { .. }
            | Error::Raft(_)
            | Error::Unreachable(_)
            | Error::NotReady(_) => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            Error::Refused(_) => (Code::FailedPrecondition, StatusCode::CONFLICT),
            Error::Remote { code, status, .. } => (
                *code,
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ),
            Error::BadRequest(_) => (Code::InvalidArgument, StatusCode::BAD_REQUEST),
            Error::Unauthenticated(_) => (Code::Unauthenticated, StatusCode::UNAUTHORIZED),
            Error::PermissionDenied(_) => (Code::PermissionDenied, StatusCode::FORBIDDEN),
            Error::Limit(_) => (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS),
            Error::NotFound(_) => (Code::NotFound, StatusCode::NOT_FOUND),
            Error::TooLarge { .. } => (Code::ResourceExhausted, StatusCode::PAYLOAD_TOO_LARGE),
            Error::UnsupportedMediaType(_) => {
                (Code::InvalidArgument, StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            Error::Unimplemented(_) => (Code::Unimplemented, StatusCode::NOT_IMPLEMENTED),
            Error::DeadlineExceeded { .. } => (Code::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT),
            Error::Query(q) if q.is_storage_unavailable() => {
                (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE)
            }
            Error::Query(q) => match q {
                firn_query::Error::Selector { .. }
                | firn_query::Error::InvalidQuery(_)
                | firn_query::Error::ReadOnly(_)
                | firn_query::Error::TooManyRows { .. } => {
                    (Code::InvalidArgument, StatusCode::BAD_REQUEST)
                }
                firn_query::Error::MemoryLimit { .. } | firn_query::Error::Limit(_) => {
                    (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS)
                }
                firn_query::Error::Timeout { .. } => {
                    (Code::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT)
                }
                _ => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
            },
            _ => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// Logs a failure of the server's own (not the client's, not overload).
    pub(crate) fn log_if_internal(&self, message: &str) {
        let (_, status) = self.code();
        if status.is_server_error()
            && status != StatusCode::SERVICE_UNAVAILABLE
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::GATEWAY_TIMEOUT
        {
            tracing::error!(error = %message, "request failed");
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (code, status) = self.code();
        let message = error_chain(&self);
        self.log_if_internal(&message);
        let body = serde_json::json!({ "code": code.as_str(), "message": message });
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"firn\""),
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
