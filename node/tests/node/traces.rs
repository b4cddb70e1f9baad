//! Trace to profile against a live node: samples carry `trace_id` and `span_id` (as
//! OpenTelemetry-instrumented agents label them); the querier's span and trace selectors and
//! Firn's own API pick exactly those samples, across services.

use firn_storage::Nanos;
use firn_storage::testing::ProfileBuilder;
use serde_json::{Value, json};

use crate::harness::{CPU, Server, now_nanos, urlencode};
use crate::tenancy::call;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const OTHER_TRACE: &str = "00f067aa0ba902b7a3ce929d0e0e4736";
const SPAN_API: &str = "00f067aa0ba902b7";
const SPAN_DB: &str = "b7ad6b7169203331";
const MS10: i64 = 10_000_000;

/// Two services, each with samples of the request's trace (one span each) and of another.
fn push(server: &Server) {
    let time = Nanos(now_nanos() - 5_000_000_000);
    let mut api = ProfileBuilder::cpu().time(time);
    api.sample(
        &["main", "handle"],
        &[3, 3 * MS10],
        &[("trace_id", TRACE), ("span_id", SPAN_API)],
    );
    api.sample(
        &["main", "handle"],
        &[7, 7 * MS10],
        &[("trace_id", OTHER_TRACE), ("span_id", "1111111111111111")],
    );
    api.sample(&["main", "idle"], &[5, 5 * MS10], &[]);
    let mut db = ProfileBuilder::cpu().time(time);
    db.sample(
        &["main", "query"],
        &[2, 2 * MS10],
        &[("trace_id", TRACE), ("span_id", SPAN_DB)],
    );
    db.sample(&["main", "vacuum"], &[4, 4 * MS10], &[]);
    for (service, profile) in [("api", api), ("db", db)] {
        let a = call(
            "POST",
            &format!("{}/ingest?name={service}&format=pprof", server.url),
            &[("Content-Type", "application/octet-stream")],
            Some(&profile.gzip()),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
}

fn querier(server: &Server, method: &str, body: Value) -> (u16, Value) {
    let a = call(
        "POST",
        &format!("{}/querier.v1.QuerierService/{method}", server.url),
        &[("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    );
    (
        a.status,
        serde_json::from_str(&a.body).unwrap_or(Value::String(a.body)),
    )
}

/// The flame graph's leaves (name → total) from Pyroscope's level encoding.
fn leaves(fg: &Value) -> Vec<(String, i64)> {
    let names = fg["names"].as_array().expect("names");
    let levels = fg["levels"].as_array().expect("levels");
    let last = levels.last().expect("a level")["values"]
        .as_array()
        .expect("values")
        .clone();
    let mut out: Vec<(String, i64)> = last
        .chunks(4)
        .map(|n| {
            let i = n[3]
                .as_str()
                .and_then(|s| s.parse::<usize>().ok())
                .or(n[3].as_u64().map(|v| v as usize))
                .expect("name");
            let total = n[1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or(n[1].as_i64())
                .expect("total");
            (names[i].as_str().expect("name").to_owned(), total)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn span_and_trace_selectors_pick_the_samples_of_a_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    push(&server);
    let now = now_nanos() / 1_000_000;
    let base = json!({
        "profileTypeID": CPU, "labelSelector": "{}",
        "start": now - 3_600_000, "end": now + 60_000, "format": "PROFILE_FORMAT_FLAMEGRAPH",
    });
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            b[k] = v.clone();
        }
        b
    };
    // One span: only its samples, of the api service.
    let (status, r) = querier(
        &server,
        "SelectMergeStacktraces",
        with(json!({"spanSelector": [SPAN_API]})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(leaves(&r["flamegraph"]), vec![("handle".into(), 3 * MS10)]);
    // A trace across both services.
    let (status, r) = querier(
        &server,
        "SelectMergeStacktraces",
        with(json!({"traceIdSelector": [TRACE]})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        leaves(&r["flamegraph"]),
        vec![("handle".into(), 3 * MS10), ("query".into(), 2 * MS10)]
    );
    // The older method, two spans.
    let (status, r) = querier(
        &server,
        "SelectMergeSpanProfile",
        with(json!({"spanSelector": [SPAN_API, SPAN_DB]})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        leaves(&r["flamegraph"]),
        vec![("handle".into(), 3 * MS10), ("query".into(), 2 * MS10)]
    );
    // Nothing carries an unknown span.
    let (status, r) = querier(
        &server,
        "SelectMergeStacktraces",
        with(json!({"spanSelector": ["ffffffffffffffff"]})),
    );
    assert_eq!(status, 200, "{r}");
    assert!(
        r["flamegraph"]["levels"]
            .as_array()
            .is_none_or(|l| l.len() <= 1),
        "{r}"
    );
    // A malformed id is refused by name.
    let (status, r) = querier(
        &server,
        "SelectMergeSpanProfile",
        with(json!({"spanSelector": ["zz"]})),
    );
    assert_eq!(status, 400, "{r}");
    assert!(
        r["message"]
            .as_str()
            .expect("message")
            .contains("span_selector"),
        "{r}"
    );

    // Firn's API: the CPU time of one trace, all services, and per service.
    let selector = urlencode(&format!("{CPU}{{}}"));
    let a = call(
        "GET",
        &format!(
            "{}/api/v1/merge?query={selector}&from=now-1h&until=now%2B1m&format=folded&trace_id={TRACE}",
            server.url
        ),
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let mut lines: Vec<&str> = a.body.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            format!("main;handle {}", 3 * MS10),
            format!("main;query {}", 2 * MS10)
        ]
    );
    let a = call(
        "GET",
        &format!(
            "{}/api/v1/series?query={selector}&from=now-1h&until=now%2B1m&step=3600&group_by=service_name&trace_id={TRACE}",
            server.url
        ),
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let series: Value = serde_json::from_str(&a.body).expect("JSON");
    let mut per_service: Vec<(String, f64)> = series["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            let total: f64 = s["points"]
                .as_array()
                .expect("points")
                .iter()
                .map(|p| p[1].as_f64().expect("v"))
                .sum();
            (
                s["labels"]["service_name"]
                    .as_str()
                    .expect("service")
                    .to_owned(),
                total,
            )
        })
        .collect();
    per_service.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        per_service,
        vec![
            ("api".into(), (3 * MS10) as f64),
            ("db".into(), (2 * MS10) as f64)
        ]
    );
    let bad = call(
        "GET",
        &format!("{}/api/v1/merge?query={selector}&trace_id=123", server.url),
        &[],
        None,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("trace_id"), "{}", bad.body);
    // The pprof of a span profile still decodes (Grafana's "download").
    let pprof = querier(
        &server,
        "SelectMergeStacktraces",
        with(json!({"spanSelector": [SPAN_DB], "format": "PROFILE_FORMAT_PPROF"})),
    );
    assert_eq!(pprof.0, 200, "{}", pprof.1);
}
