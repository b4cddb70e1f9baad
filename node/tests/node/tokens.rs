//! Tokens as clients use them against a live `firn serve --auth=token`: Basic auth as the SDKs
//! send it, revocation of tokens and tenants (kept across a restart), and the refusals of a
//! node started without a usable admin token.

use base64::Engine;

use crate::tenancy::{ADMIN, bearer, call, ingest, start_token_node, token};

#[test]
fn sdk_basic_auth_revocation_and_tenant_revocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_token_node(dir.path(), &[]);
    let (id, secret) = token(&server, "acme", "admin");
    // Pyroscope SDKs and Grafana: Basic auth, the user anything, the token as the password.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("123456:{secret}"))
    );
    let a = call(
        "POST",
        &format!("{}/ingest?name=sdk.cpu&format=folded", server.url),
        &[("Authorization", &basic), ("Content-Type", "text/plain")],
        Some(b"main;work 3\n"),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(
        "GET",
        &format!(
            "{}/api/v1/labels/service_name/values?from=now-1h&until=now%2B1h",
            server.url
        ),
        &[("Authorization", &basic)],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("sdk"), "{}", a.body);
    // The tenant's admin makes a second token and revokes the first.
    let (_, second) = {
        let t = call(
            "POST",
            &format!("{}/api/v1/admin/tenants/acme/tokens", server.url),
            &[
                ("Authorization", &bearer(&secret)),
                ("Content-Type", "application/json"),
            ],
            Some(br#"{"role":"write","name":"ci"}"#),
        );
        assert_eq!(t.status, 201, "{}", t.body);
        let j = t.json();
        (
            j["id"].as_str().expect("id").to_owned(),
            j["token"].as_str().expect("token").to_owned(),
        )
    };
    let revoked = call(
        "DELETE",
        &format!("{}/api/v1/admin/tokens/{id}", server.url),
        &[("Authorization", &bearer(&secret))],
        None,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let after = ingest(&server, Some(&secret), None, "sdk.cpu", "main;work 1\n");
    assert_eq!(
        after.status, 401,
        "a revoked token stops at once: {}",
        after.body
    );
    assert!(after.body.contains("revoked"), "{}", after.body);
    assert_eq!(
        ingest(&server, Some(&second), None, "sdk.cpu", "main;work 1\n").status,
        200
    );
    // Revoking the tenant stops all its tokens.
    let gone = call(
        "DELETE",
        &format!("{}/api/v1/admin/tenants/acme", server.url),
        &[("Authorization", &bearer(ADMIN))],
        None,
    );
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert_eq!(
        ingest(&server, Some(&second), None, "sdk.cpu", "main;work 1\n").status,
        401
    );
    // Bad admin requests name their field.
    let bad = call(
        "POST",
        &format!("{}/api/v1/admin/tenants", server.url),
        &[
            ("Authorization", &bearer(ADMIN)),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"id":"a/b"}"#),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("tenant id"), "{}", bad.body);
    let bad = call(
        "POST",
        &format!("{}/api/v1/admin/tenants/beta-none/tokens", server.url),
        &[
            ("Authorization", &bearer(ADMIN)),
            ("Content-Type", "application/json"),
        ],
        Some(br#"{"role":"root"}"#),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("role"), "{}", bad.body);
    // A restart keeps tenants and tokens (the meta group's log and snapshot).
    let mut server = server;
    server.kill_and_restart();
    assert_eq!(
        ingest(&server, Some(&second), None, "sdk.cpu", "main;work 1\n").status,
        401
    );
    let listed = call(
        "GET",
        &format!("{}/api/v1/admin/tenants", server.url),
        &[("Authorization", &bearer(ADMIN))],
        None,
    );
    assert!(listed.body.contains("\"acme\""), "{}", listed.body);
    // The same data directory started without --auth=token is refused: it would open the
    // node's Raft and admin surfaces to anyone.
    let data_dir = server.data_dir.clone();
    drop(server);
    let mut open = std::process::Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn firn");
    let exited = crate::harness::wait_until(std::time::Duration::from_secs(20), || {
        open.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = open.kill();
    }
    let out = open.wait_with_output().expect("output");
    assert!(
        exited && !out.status.success(),
        "a token node's directory opened without auth"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--auth=token"), "{err}");
}

#[test]
fn auth_token_needs_an_admin_token() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(["serve", "--auth", "token", "--check-config"])
        .env_remove("FIRN_ADMIN_TOKEN")
        .output()
        .expect("run firn");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("auth") && err.contains("admin token"), "{err}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(["serve", "--auth", "token", "--check-config"])
        .env("FIRN_ADMIN_TOKEN", "tiny-sekrit")
        .output()
        .expect("run firn");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("at least 16"), "{err}");
    assert!(
        !err.contains("tiny-sekrit"),
        "the token is never printed: {err}"
    );
}
