//! Real client libraries against a live `firn serve`. A client that is not installed is
//! skipped with a note, never faked: `.ci/test` installs them (`FIRN_TEST_PYTHON` names the
//! Python that has them).

use std::process::Command;
use std::time::Duration;

use crate::harness::{CPU, Server, get, urlencode, wait_until};

fn python() -> String {
    std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn has_module(module: &str) -> bool {
    Command::new(python())
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success())
}

/// pyroscope-io (latest; Push over Connect, gzip proto) profiling a Python busy loop: the hot
/// function dominates the merged profile and the SDK's tags are label values.
#[test]
fn pyroscope_io_push_sdk() {
    if !has_module("pyroscope") {
        eprintln!(
            "skipped: {} has no pyroscope-io (bash .ci/test installs it)",
            python()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/pyroscope_push.py"
    );
    let status = Command::new(python())
        .args([script, &server.url, "6"])
        .status()
        .expect("run the SDK program");
    assert!(status.success(), "the SDK program failed: {status}");

    let top_url = format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format=top",
        server.url,
        urlencode(&format!("{CPU}{{service_name=\"pyapp\"}}"))
    );
    let tenant_get = |url: &str| {
        ureq::get(url)
            .set("X-Scope-OrgID", "py-tenant")
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
