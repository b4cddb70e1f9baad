//! The web UI: a page, its script and its style sheet, compiled into the binary (no CDN, no
//! request leaves the node), plus `/ui/config.json`, which tells the page how this node
//! authenticates. Everything the page shows it asks of the HTTP API, with the caller's token.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::tenancy::auth::AuthMode;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/style.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets change with the binary: a browser revalidates on every load.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.js`.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /ui/style.css`.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /ui/config.json`: `{"auth": "none" | "token"}`, so the page asks for a token only
/// where one is needed.
pub async fn config(State(state): State<AppState>) -> Response {
    let auth = match state.cluster.tenancy.auth.mode {
        AuthMode::None => "none",
        AuthMode::Token => "token",
    };
    axum::Json(serde_json::json!({ "auth": auth })).into_response()
}
