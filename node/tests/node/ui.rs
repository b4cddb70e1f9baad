//! The web UI in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright
//! from PyPI) against live `firn serve` processes holding the profiles of a small workload
//! whose answers are known. `tests/clients/ui_browser.py` does the clicking and checks; this
//! test ingests, runs it and reports. `FIRN_TEST_PYTHON` names a Python with `playwright`
//! and `FIRN_TEST_CHROMIUM` the browser (`bash .ci/test` installs both); without them the test
//! is skipped with a note. `FIRN_UI_SCREENSHOTS=docs/ui` writes its screenshots for the README.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Server, now_nanos};
use crate::tenancy::{Answer, bearer, call, start_token_node, token};

fn chromium() -> Option<String> {
    let path = std::env::var("FIRN_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    std::path::Path::new(&path).exists().then_some(path)
}

fn has_playwright(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import playwright.sync_api"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `POST /ingest` of folded text for `app` at unix second `at`.
fn ingest_at(server: &Server, headers: &[(&str, &str)], app: &str, at: i64, folded: &str) {
    let mut headers = headers.to_vec();
    headers.push(("Content-Type", "text/plain"));
    let answer: Answer = call(
        "POST",
        &format!(
            "{}/ingest?name={}&format=folded&from={at}&until={}",
            server.url,
            firn_node::cli::urlencode(app),
            at + 10
        ),
        &headers,
        Some(folded.as_bytes()),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// One profile of the workload: `crunch` holds 60 % (40 % itself, 20 % in `math.sqrt`), and
/// `changed` (the baseline's `idle`, the comparison's `newfeature`) 25 %.
fn workload(changed: &str) -> String {
    format!(
        "main;work;crunch;math.sqrt 200\nmain;work;crunch 400\nmain;work;{changed} 250\nmain;setup 150\n"
    )
}

/// 50 modules of 1,000 functions each: a flame graph of 50,052 nodes.
fn large_profile() -> String {
    let mut text = String::with_capacity(1 << 21);
    for m in 0..50 {
        for f in 0..1000 {
            text.push_str(&format!("main;module{m};function{m}_{f} {}\n", 1 + f % 7));
        }
    }
    text
}

#[test]
fn the_web_ui_shows_where_the_time_goes() {
    let python = std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let Some(chromium) = chromium().filter(|_| has_playwright(&python)) else {
        eprintln!(
            "skipped: needs {python} with playwright and Chromium (bash .ci/test installs them)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("open"), &[]);
    let tenant = [("X-Scope-OrgID", "team-ui")];
    let now = now_nanos() / 1_000_000_000;
    ingest_at(
        &server,
        &tenant,
        "ui-app.cpu{pod=a}",
        now - 3000,
        &workload("idle"),
    );
    ingest_at(
        &server,
        &tenant,
        "ui-app.cpu{pod=b}",
        now - 600,
        &workload("newfeature"),
    );
    ingest_at(
        &server,
        &tenant,
        "ui-big.cpu{pod=a}",
        now - 300,
        &large_profile(),
    );

    let token_server = start_token_node(&dir.path().join("token"), &[]);
    let (_, writer) = token(&token_server, "team-ui", "write");
    let (_, reader) = token(&token_server, "team-ui", "read");
    let auth = bearer(&writer);
    ingest_at(
        &token_server,
        &[("Authorization", &auth)],
        "ui-app.cpu{pod=a}",
        now - 600,
        &workload("idle"),
    );

    let facts = json!({
        "url": server.url,
        "tenant": "team-ui",
        "service": "ui-app",
        "big_service": "ui-big",
        "big_nodes": 50_000,
        "hot": "crunch",
        "hot_share": 0.6,
        "hot_tooltip": "60.00%",
        "leaves": ["crunch", "idle", "newfeature", "setup", "math.sqrt"],
        "parent": "work",
        "other_branch": "setup",
        "callee": "math.sqrt",
        "top_by_total": ["main", "work"],
        "grew": "newfeature",
        "shrank": "idle",
        "baseline": [(now - 3300).to_string(), (now - 1800).to_string()],
        "comparison": [(now - 1200).to_string(), now.to_string()],
        "token_url": token_server.url,
        "token": reader,
    });
    let shots = std::env::var("FIRN_UI_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("screenshots"));
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ui_browser.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(facts.to_string())
        .arg(&chromium)
        .arg(&shots)
        .output()
        .expect("run the browser");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    assert!(
        output.status.success(),
        "the browser checks failed: {}\n{}",
        summary["failures"],
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        summary["big_nodes"].as_u64().unwrap_or(0) >= 50_000,
        "{summary}"
    );
    eprintln!("{summary}");
}
