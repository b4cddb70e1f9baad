//! `/ingest` against a live `firn serve`: what goes in comes out of a merge; bad input gets a
//! 4xx naming the problem and changes nothing.

use crate::harness::{CPU, Server, post, urlencode};

#[test]
fn folded_uploads_are_merged_per_service_and_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let (status, body) = server.ingest_folded(
        "shop.cpu{env=prod}",
        "main;serve;hash 30\nmain;serve;parse 10\n",
    );
    assert_eq!(
        (status, body.as_str()),
        (200, ""),
        "success is exactly 200, empty"
    );
    server.ingest_folded("shop.cpu{env=dev}", "main;gc 5\n");
    server.ingest_folded("other.cpu", "main;idle 99\n");

    let (status, folded) = server.merge(&format!("{CPU}{{service_name=\"shop\"}}"), "folded");
    assert_eq!(status, 200, "{folded}");
    // Counts are samples at the default 100 Hz: 10 ms each.
    assert!(folded.contains("main;serve;hash 300000000"), "{folded}");
    assert!(folded.contains("main;gc 50000000"), "{folded}");
    assert!(!folded.contains("idle"), "{folded}");
    let (status, metrics) = crate::harness::get(&format!("{}/metrics", server.url));
    assert_eq!(status, 200);
    assert!(
        metrics.contains("firn_http_requests_total{route=\"/ingest\",status=\"200\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("firn_ingest_samples_total 4"), "{metrics}");
    let (_, prod) = server.merge(
        &format!("{CPU}{{service_name=\"shop\",env=\"prod\"}}"),
        "top",
    );
    assert!(
        prod.contains("\"function\":\"hash\"") && !prod.contains("gc"),
        "{prod}"
    );
}

#[test]
fn bad_input_is_a_4xx_naming_the_problem_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        dir.path(),
        &[
            "--max-request-bytes",
            "1000000",
            "--max-profile-bytes",
            "10000000",
        ],
    );
    server.ingest_folded("kept.cpu", "main;kept 1\n");
    let url = &server.url;
    let bomb = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 50_000_000]).expect("compress");
        e.finish().expect("finish")
    };
    let cases: Vec<(String, &str, Vec<u8>, u16, &str)> = vec![
        (
            format!("{url}/ingest"),
            "text/plain",
            b"a 1".to_vec(),
            400,
            "`name` is required",
        ),
        (
            format!("{url}/ingest?name=my.app"),
            "text/plain",
            b"a 1".to_vec(),
            400,
            "unknown profile type",
        ),
        (
            format!("{url}/ingest?name=x.cpu"),
            "text/plain",
            b"a;b notanumber".to_vec(),
            400,
            "line 1",
        ),
        (
            format!("{url}/ingest?name=x&format=pprof"),
            "binary/octet-stream",
            b"\x1f\x8b\x08garbage".to_vec(),
            400,
            "gzip",
        ),
        (
            format!("{url}/ingest?name=x&format=pprof"),
            "binary/octet-stream",
            bomb,
            429,
            "max_profile_decompressed_bytes",
        ),
        (
            format!("{url}/ingest?name=x&format=jfr"),
            "application/octet-stream",
            b"jfr".to_vec(),
            415,
            "format=jfr",
        ),
        (
            format!("{url}/ingest?name=x{{bad%20label=1}}"),
            "text/plain",
            b"a 1".to_vec(),
            400,
            "label name",
        ),
    ];
    for (url, content_type, body, status, needle) in cases {
        let (got, text) = post(&url, content_type, &body);
        assert_eq!(got, status, "{url}: {text}");
        assert!(text.contains(needle), "{url}: {text}");
        assert!(text.contains("\"code\""), "Connect error JSON: {text}");
    }
    let (status, text) = crate::harness::get(&format!(
        "{url}/api/v1/merge?query={}",
        crate::harness::urlencode("process_cpu{")
    ));
    assert_eq!(status, 400, "{text}");
    let (_, folded) = server.merge(CPU, "folded");
    assert_eq!(
        folded.trim(),
        "main;kept 10000000",
        "nothing else was stored"
    );
}

#[test]
fn sql_is_read_only_and_scoped_to_the_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    server.ingest_folded("shop.cpu", "main;a 1\nmain;b 2\n");
    let sql = |statement: &str, format: &str, tenant: &str| {
        let response = ureq::post(&format!("{}/api/v1/sql?format={format}", server.url))
            .set("X-Scope-OrgID", tenant)
            .send_string(statement);
        match response {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    };
    let (status, json) = sql(
        "SELECT \"labels.service_name\" AS service, sum(value) AS v FROM samples GROUP BY 1",
        "json",
        "anonymous",
    );
    assert_eq!(status, 200, "{json}");
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(parsed["columns"], serde_json::json!(["service", "v"]));
    assert_eq!(parsed["rows"], serde_json::json!([["shop", "30000000"]]));
    let (status, text) = sql("SELECT count(*) AS n FROM samples", "text", "anonymous");
    assert_eq!(status, 200);
    assert!(text.contains("| 2 |"), "{text}");
    let (_, other) = sql("SELECT count(*) AS n FROM samples", "text", "someone-else");
    assert!(
        other.contains("| 0 |"),
        "another tenant sees nothing: {other}"
    );
    let (status, refused) = sql("DROP TABLE samples", "json", "anonymous");
    assert_eq!(status, 400, "{refused}");
    let (status, bad) = sql("SELEC nonsense", "json", "anonymous");
    assert_eq!(status, 400, "{bad}");
}

/// A client that retries a write with its `Idempotency-Key` is answered 200 again and the
/// write counts once; another key is another write; a bad key is a 400 naming the header.
#[test]
fn retries_with_an_idempotency_key_count_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let url = format!(
        "{}/ingest?name={}&format=folded",
        server.url,
        urlencode("keyed.cpu")
    );
    let send = |key: &str| match ureq::post(&url)
        .set("Idempotency-Key", key)
        .send_bytes(b"main;retried 3\n")
    {
        Ok(r) => (r.status(), String::new()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(send("upload-1").0, 200);
    assert_eq!(send("upload-1").0, 200, "a retry is acknowledged");
    let selector = format!("{CPU}{{service_name=\"keyed\"}}");
    let (_, folded) = server.merge(&selector, "folded");
    assert_eq!(
        folded.trim(),
        "main;retried 30000000",
        "counted once: {folded}"
    );
    assert_eq!(send("upload-2").0, 200);
    let (_, folded) = server.merge(&selector, "folded");
    assert_eq!(folded.trim(), "main;retried 60000000", "{folded}");
    let (status, body) = send(&"k".repeat(200));
    assert_eq!(status, 400);
    assert!(
        body.contains("Idempotency-Key") && body.contains("128"),
        "{body}"
    );
}

/// Writes in flight share a byte allowance: with room for one at a time, concurrent writes
/// wait their turn (none is lost, none deadlocks), each within its wait.
#[test]
fn concurrent_writes_share_the_inflight_allowance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--max-inflight-write-bytes", "1024"]);
    std::thread::scope(|s| {
        for t in 0..8 {
            let server = &server;
            s.spawn(move || {
                for n in 0..5 {
                    let text = format!("main;t{t};n{n} 1\n") + &"main;pad 1\n".repeat(300);
                    let (status, body) = server.ingest_folded("inflight.cpu", &text);
                    assert_eq!(status, 200, "{body}");
                }
            });
        }
    });
    let (_, folded) = server.merge(&format!("{CPU}{{service_name=\"inflight\"}}"), "folded");
    for t in 0..8 {
        for n in 0..5 {
            assert!(folded.contains(&format!("main;t{t};n{n} ")), "t{t} n{n}");
        }
    }
}
