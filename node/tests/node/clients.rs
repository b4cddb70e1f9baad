//! Real client libraries against a live `firn serve`. A client that is not installed is
//! skipped with a note, never faked: `.ci/test` installs them (`FIRN_TEST_PYTHON` names the
//! Python that has them).

use std::process::Command;
use std::time::Duration;

use crate::harness::{CPU, Server, get, urlencode, wait_until};

fn has_module(python: &str, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// pyroscope-io ≥ 1.0 (Push over Connect, gzip proto), from `FIRN_TEST_PYTHON`.
#[test]
fn pyroscope_io_push_sdk() {
    let python = std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    python_sdk(&python, "pyapp", 6, false);
}

/// The same SDK against `--auth=token`: Basic auth with the tenant's write token as the
/// password, as Grafana Cloud's instructions configure it.
#[test]
fn pyroscope_io_push_sdk_with_a_token() {
    let python = std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    python_sdk(&python, "pyapp-auth", 6, true);
}

/// pyroscope-io 0.8.16 (`/ingest` with `from`/`until` in seconds, every 10 s), from
/// `FIRN_TEST_PYTHON_OLD`.
#[test]
fn pyroscope_io_ingest_sdk() {
    let python = std::env::var("FIRN_TEST_PYTHON_OLD").unwrap_or_else(|_| "python3".into());
    python_sdk(&python, "pyapp-old", 12, false);
}

/// Profiles a Python busy loop with the SDK: the hot function dominates the merged profile and
/// the SDK's tags are label values.
fn python_sdk(python: &str, app: &str, seconds: u32, with_token: bool) {
    if !has_module(python, "pyroscope") {
        eprintln!("skipped: {python} has no pyroscope-io (bash .ci/test installs it)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, tokens) = if with_token {
        let server = crate::tenancy::start_token_node(dir.path(), &[]);
        let (_, write) = crate::tenancy::token(&server, "py-tenant", "write");
        let (_, read) = crate::tenancy::token(&server, "py-tenant", "read");
        (server, Some((write, read)))
    } else {
        (Server::start(dir.path(), &[]), None)
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/pyroscope_sdk.py"
    );
    let mut sdk = Command::new(python);
    sdk.args([script, &server.url, &seconds.to_string(), app]);
    if let Some((write, _)) = &tokens {
        sdk.arg(write);
    }
    let status = sdk.status().expect("run the SDK program");
    assert!(status.success(), "the SDK program failed: {status}");

    let top_url = format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format=top",
        server.url,
        urlencode(&format!("{CPU}{{service_name=\"{app}\"}}"))
    );
    let tenant_get = |url: &str| {
        let request = ureq::get(url).set("X-Scope-OrgID", "py-tenant");
        match &tokens {
            Some((_, read)) => request.set("Authorization", &format!("Bearer {read}")),
            None => request,
        }
        .call()
        .map(|r| r.into_string().unwrap_or_default())
        .unwrap_or_default()
    };
    let arrived = wait_until(Duration::from_secs(20), || {
        tenant_get(&top_url).contains("hot_python_function")
    });
    assert!(arrived, "no profile arrived: {}", tenant_get(&top_url));
    let top: serde_json::Value = serde_json::from_str(&tenant_get(&top_url)).expect("top JSON");
    let first = top[0]["function"].as_str().unwrap_or_default();
    assert!(
        first.contains("hot_python_function"),
        "the hot function leads the top table: {top}"
    );
    // The SDK's tags are label values; another tenant sees nothing.
    let regions = tenant_get(&format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format=folded",
        server.url,
        urlencode(&format!("{CPU}{{region=\"eu-north\",phase=\"busy\"}}"))
    ));
    assert!(regions.contains("hot_python_function"), "{regions}");
    if tokens.is_some() {
        return;
    }
    let (_, other) = get(&format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format=folded",
        server.url,
        urlencode(CPU)
    ));
    assert!(
        other.trim().is_empty(),
        "the anonymous tenant sees nothing: {other}"
    );
}
