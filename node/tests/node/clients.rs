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

/// The `pyroscope` crate (2.x) with its pprof-rs backend, profiling this test process and
/// pushing over Connect: the hot function leads the merged profile, the tags are labels.
#[test]
fn pyroscope_rust_sdk_pushes_its_pprof_backend() {
    use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
    use pyroscope::pyroscope::PyroscopeAgentBuilder;

    #[inline(never)]
    fn hot_rust_function(n: u64) -> u64 {
        (0..n).fold(0u64, |acc, i| {
            std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i))
        })
    }

    // reqwest builds its client with rustls even for http://; the crate leaves the provider
    // to the application.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let agent = PyroscopeAgentBuilder::new(
        &server.url,
        "rustapp",
        100,
        "pyroscope-rs",
        "2.1",
        pprof_backend(PprofConfig { sample_rate: 100 }, BackendConfig::default()),
    )
    .tags(vec![("region", "eu-north")])
    .tenant_id("rust-tenant".into())
    .upload_interval(Duration::from_secs(1))
    .build()
    .expect("the agent builds");
    let running = agent.start().expect("the agent starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let mut sink = 0u64;
    while std::time::Instant::now() < deadline {
        sink = sink.wrapping_add(hot_rust_function(2_000_000));
    }
    std::hint::black_box(sink);
    running.stop().expect("the agent stops").shutdown();

    let tenant_get = |url: &str| {
        ureq::get(url)
            .set("X-Scope-OrgID", "rust-tenant")
            .call()
            .map(|r| r.into_string().unwrap_or_default())
            .unwrap_or_default()
    };
    let types: serde_json::Value = serde_json::from_str(&tenant_get(&format!(
        "{}/api/v1/profile-types?from=now-1h&until=now%2B1m",
        server.url
    )))
    .expect("types JSON");
    let cpu = types["profile_types"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["sample_type"] == "cpu"))
        .and_then(|t| t["id"].as_str())
        .unwrap_or_else(|| panic!("a cpu profile type arrived: {types}"))
        .to_owned();
    let top = tenant_get(&format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1m&format=top",
        server.url,
        urlencode(&format!(
            "{cpu}{{service_name=\"rustapp\",region=\"eu-north\"}}"
        ))
    ));
    let top: serde_json::Value = serde_json::from_str(&top).expect("top JSON");
    let entries = top.as_array().expect("a top table");
    let cumulative = |e: &serde_json::Value| e["cumulative"].as_i64().unwrap_or(0);
    let all = entries.iter().map(cumulative).max().unwrap_or(0);
    let hot = entries
        .iter()
        .find(|e| {
            e["function"]
                .as_str()
                .is_some_and(|f| f.ends_with("hot_rust_function"))
        })
        .map(cumulative)
        .unwrap_or(0);
    // Unoptimised, the loop's own work is in inlined iterator frames below it.
    assert!(
        all > 0 && hot * 10 >= all * 8,
        "the hot function holds most of the CPU time ({hot} of {all}): {top}"
    );
}
