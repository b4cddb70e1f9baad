//! Per-tenant limits against a live node: each limit refuses with 429 naming itself and its
//! value, changes at runtime through the admin API, and leaves other tenants alone; retention
//! hides old rows and deletes the blocks past it, with the node's clock moved by a file.

use std::time::Duration;

use base64::Engine;
use firn_storage::Nanos;
use firn_storage::testing::ProfileBuilder;
use serde_json::json;

use crate::harness::{CPU, Server, TestClock, metric, now_nanos, urlencode, wait_until};
use crate::tenancy::{Answer, call};

fn set_limits(server: &Server, tenant: &str, limits: serde_json::Value) -> Answer {
    call(
        "PUT",
        &format!("{}/api/v1/admin/tenants/{tenant}/limits", server.url),
        &[("Content-Type", "application/json")],
        Some(limits.to_string().as_bytes()),
    )
}

fn limit_ok(server: &Server, tenant: &str, limits: serde_json::Value) {
    let a = set_limits(server, tenant, limits);
    assert_eq!(a.status, 200, "{}", a.body);
}

fn folded(server: &Server, tenant: &str, name: &str, text: &str) -> Answer {
    crate::tenancy::ingest(server, None, Some(tenant), name, text)
}

fn pprof(server: &Server, tenant: &str, body: &[u8]) -> Answer {
    call(
        "POST",
        &format!("{}/ingest?name=limited&format=pprof", server.url),
        &[
            ("X-Scope-OrgID", tenant),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(body),
    )
}

fn merge(server: &Server, tenant: &str, from: &str) -> Answer {
    call(
        "GET",
        &format!(
            "{}/api/v1/merge?query={}&from={from}&until=now%2B1m&format=folded",
            server.url,
            urlencode(&format!("{CPU}{{}}"))
        ),
        &[("X-Scope-OrgID", tenant)],
        None,
    )
}

fn sql(server: &Server, tenant: &str, statement: &str) -> Answer {
    call(
        "POST",
        &format!("{}/api/v1/sql", server.url),
        &[("X-Scope-OrgID", tenant), ("Content-Type", "text/plain")],
        Some(statement.as_bytes()),
    )
}

/// A 429 naming `limit` and its value.
fn refused(a: &Answer, limit: &str, value: u64) {
    assert_eq!(a.status, 429, "{limit}: {}", a.body);
    let body = a.json();
    assert_eq!(body["code"], "resource_exhausted", "{}", a.body);
    let message = body["message"].as_str().expect("message");
    assert!(message.contains(limit), "{limit}: {message}");
    assert!(
        message.contains(&value.to_string()),
        "{limit} {value}: {message}"
    );
}

fn profile(samples: usize) -> Vec<u8> {
    let mut p = ProfileBuilder::cpu().time(Nanos(now_nanos() - 1_000_000_000));
    for i in 0..samples {
        p.sample(&["main", &format!("function_{i}")], &[1, 10_000_000], &[]);
    }
    p.gzip()
}

#[test]
fn every_limit_refuses_by_name_and_spares_other_tenants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let small = profile(5);
    let large = profile(200);

    // Profile size, compressed and decompressed.
    limit_ok(
        &server,
        "lim",
        json!({"max_profile_bytes": small.len() + 10}),
    );
    refused(
        &pprof(&server, "lim", &large),
        "max_profile_bytes",
        small.len() as u64 + 10,
    );
    assert_eq!(pprof(&server, "lim", &small).status, 200);
    assert_eq!(
        pprof(&server, "free", &large).status,
        200,
        "another tenant is not limited"
    );
    limit_ok(
        &server,
        "lim",
        json!({"max_profile_bytes": null, "max_profile_decompressed_bytes": 300}),
    );
    refused(
        &pprof(&server, "lim", &small),
        "max_profile_decompressed_bytes",
        300,
    );

    // Labels: names per series (service_name and the profile type's __name__ count), name
    // and value lengths.
    limit_ok(
        &server,
        "lim",
        json!({"max_profile_decompressed_bytes": null, "max_label_names_per_series": 3}),
    );
    assert_eq!(
        folded(&server, "lim", "app.cpu{a=1}", "main 1\n").status,
        200
    );
    refused(
        &folded(&server, "lim", "app.cpu{a=1,b=2}", "main 1\n"),
        "max_label_names_per_series",
        3,
    );
    limit_ok(
        &server,
        "lim",
        json!({"max_label_name_length": 5, "max_label_value_length": 4}),
    );
    refused(
        &folded(&server, "lim", "app.cpu{abcdefgh=1}", "main 1\n"),
        "max_label_name_length",
        5,
    );
    refused(
        &folded(&server, "lim", "app.cpu{a=12345}", "main 1\n"),
        "max_label_value_length",
        4,
    );
    assert_eq!(
        folded(&server, "free", "app.cpu{abcdefgh=12345,b=2}", "main 1\n").status,
        200
    );
    limit_ok(
        &server,
        "lim",
        json!({"max_label_names_per_series": null, "max_label_name_length": null, "max_label_value_length": null}),
    );

    // Ingestion rate: the burst holds one profile and the rate refills nothing noticeable.
    let burst = small.len() as u64 * 3 / 2;
    limit_ok(
        &server,
        "lim",
        json!({"ingestion_rate_bytes": 1, "ingestion_burst_bytes": burst}),
    );
    assert_eq!(pprof(&server, "lim", &small).status, 200);
    let over = pprof(&server, "lim", &small);
    refused(&over, "ingestion_rate_bytes", 1);
    assert_eq!(
        pprof(&server, "free", &small).status,
        200,
        "the quiet tenant's bucket is its own"
    );
    refused(
        &pprof(&server, "lim", &large),
        "ingestion_burst_bytes",
        burst,
    );
    // Raised at runtime, it admits again at once.
    limit_ok(
        &server,
        "lim",
        json!({"ingestion_rate_bytes": null, "ingestion_burst_bytes": null}),
    );
    assert_eq!(pprof(&server, "lim", &small).status, 200);

    // Active series: two distinct label sets; a third is refused, known ones keep writing.
    limit_ok(&server, "series", json!({"max_active_series": 2}));
    for pod in ["p1", "p2"] {
        let a = folded(
            &server,
            "series",
            &format!("app.cpu{{pod={pod}}}"),
            "main 1\n",
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    refused(
        &folded(&server, "series", "app.cpu{pod=p3}", "main 1\n"),
        "max_active_series",
        2,
    );
    assert_eq!(
        folded(&server, "series", "app.cpu{pod=p1}", "main 1\n").status,
        200
    );
    assert_eq!(
        folded(&server, "free", "app.cpu{pod=p3}", "main 1\n").status,
        200
    );

    // Push over Connect: the same refusal in Connect's shape.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&small);
    let push = call(
        "POST",
        &format!("{}/push.v1.PusherService/Push", server.url),
        &[("X-Scope-OrgID", "series"), ("Content-Type", "application/json")],
        Some(
            format!(
                r#"{{"series":[{{"labels":[{{"name":"__name__","value":"process_cpu"}},{{"name":"service_name","value":"new"}}],"samples":[{{"rawProfile":"{b64}","ID":""}}]}}]}}"#
            )
            .as_bytes(),
        ),
    );
    refused(&push, "max_active_series", 2);

    // Query range and memory.
    limit_ok(&server, "lim", json!({"max_query_range_secs": 3600}));
    refused(
        &merge(&server, "lim", "now-3h"),
        "max_query_range_secs",
        3600,
    );
    let ok = merge(&server, "lim", "now-30m");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("function_"), "{}", ok.body);
    limit_ok(
        &server,
        "lim",
        json!({"max_query_range_secs": null, "max_query_memory_bytes": 64}),
    );
    refused(
        &merge(&server, "lim", "now-30m"),
        "max_query_memory_bytes",
        64,
    );
    refused(
        &sql(
            &server,
            "lim",
            "SELECT stack_id, sum(value) FROM samples GROUP BY stack_id",
        ),
        "max_query_memory_bytes",
        64,
    );
    assert_eq!(merge(&server, "free", "now-30m").status, 200);

    // The tenant's limits as its admin sees them; bad values name the field.
    let seen = call(
        "GET",
        &format!("{}/api/v1/admin/tenants/lim/limits", server.url),
        &[],
        None,
    );
    assert_eq!(
        seen.json()["limits"]["max_query_memory_bytes"],
        64,
        "{}",
        seen.body
    );
    assert_eq!(
        seen.json()["overrides"],
        json!({"max_query_memory_bytes": 64})
    );
    for (bad, field) in [
        (json!({"max_profile_bytes": 0}), "max_profile_bytes"),
        (json!({"max_lables": 1}), "max_lables"),
        (json!({"retention_secs": "a week"}), "retention_secs"),
    ] {
        let a = set_limits(&server, "lim", bad);
        assert_eq!(a.status, 400, "{}", a.body);
        assert!(a.body.contains(field), "{field}: {}", a.body);
    }
    // Cluster-wide defaults sit under every tenant's overrides.
    let a = call(
        "PUT",
        &format!("{}/api/v1/admin/limits", server.url),
        &[("Content-Type", "application/json")],
        Some(br#"{"max_label_names_per_series": 3}"#),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    refused(
        &folded(&server, "anyone", "app.cpu{a=1,b=2}", "main 1\n"),
        "max_label_names_per_series",
        3,
    );
}

#[test]
fn retention_hides_old_rows_and_deletes_their_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_nanos() / 1_000_000_000;
    let clock = TestClock::new(dir.path(), now);
    let (key, value) = clock.env();
    let server = Server::start_with_env(
        dir.path(),
        &["--flush-interval-secs", "1", "--retention-check-secs", "1"],
        &[(key, &value)],
    );
    let day = 86_400;
    limit_ok(&server, "short", json!({"retention_secs": day}));
    limit_ok(&server, "long", json!({"retention_secs": 30 * day}));
    // A block of short's rows alone, then one shared with long.
    assert_eq!(
        folded(&server, "short", "old.cpu", "main;alone 5\n").status,
        200
    );
    assert!(wait_until(Duration::from_secs(20), || metric(
        &server,
        "firn_blocks"
    ) == 1));
    assert_eq!(
        folded(&server, "short", "old.cpu", "main;shared 7\n").status,
        200
    );
    assert_eq!(
        folded(&server, "long", "kept.cpu", "main;kept 9\n").status,
        200
    );
    assert!(wait_until(Duration::from_secs(20), || metric(
        &server,
        "firn_blocks"
    ) == 2));
    let blocks_dir = dir.path().join("objects/shards/00000/blocks");
    let listed = || {
        let mut v: Vec<String> = std::fs::read_dir(&blocks_dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    // A local object store leaves the emptied directory behind.
                    .filter(|e| e.path().join("samples.parquet").exists())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    assert_eq!(listed().len(), 2, "{:?}", listed());
    assert!(merge(&server, "short", "now-1h").body.contains("alone 5"));

    // Two days on: short's rows are past its retention, long's are not.
    clock.set(now + 2 * day);
    let hidden = merge(&server, "short", "now-1h");
    assert_eq!(hidden.status, 200, "{}", hidden.body);
    assert!(
        hidden.body.trim().is_empty(),
        "past retention: {}",
        hidden.body
    );
    let count = sql(&server, "short", "SELECT count(*) AS n FROM samples");
    assert_eq!(count.status, 200, "{}", count.body);
    assert_eq!(count.json()["rows"], json!([["0"]]), "{}", count.body);
    assert!(merge(&server, "long", "now-1h").body.contains("kept 9"));
    // The block of short's rows alone goes; the shared one stays for long.
    assert!(
        wait_until(Duration::from_secs(20), || metric(&server, "firn_blocks")
            == 1),
        "the expired block is dropped"
    );
    assert!(
        wait_until(Duration::from_secs(5), || listed().len() == 1),
        "{:?}",
        listed()
    );
    assert!(merge(&server, "long", "now-1h").body.contains("kept 9"));
}

#[test]
fn buffered_rows_past_retention_are_not_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_nanos() / 1_000_000_000;
    let clock = TestClock::new(dir.path(), now);
    let (key, value) = clock.env();
    // Nothing flushes: every row stays in the buffer.
    let server = Server::start_with_env(
        dir.path(),
        &["--flush-interval-secs", "3600"],
        &[(key, &value)],
    );
    limit_ok(&server, "short", json!({"retention_secs": 3600}));
    assert_eq!(
        folded(&server, "short", "buf.cpu", "main;buffered 4\n").status,
        200
    );
    assert!(
        merge(&server, "short", "now-1h")
            .body
            .contains("buffered 4")
    );
    clock.set(now + 7200);
    assert!(merge(&server, "short", "now-1h").body.trim().is_empty());
    let count = sql(&server, "short", "SELECT count(*) AS n FROM samples");
    assert_eq!(count.json()["rows"], json!([["0"]]), "{}", count.body);
    assert_eq!(metric(&server, "firn_blocks"), 0, "still buffered");
    // The rows were hidden, not lost: with the clock back they are there.
    clock.set(now);
    assert!(
        merge(&server, "short", "now-1h")
            .body
            .contains("buffered 4")
    );
}
