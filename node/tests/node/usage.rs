//! Usage metering against a live node whose clock follows a file: hours apart are metered
//! apart, a retried keyed write once, and `/metrics` agrees.

use std::time::Duration;

use firn_storage::Nanos;
use firn_storage::testing::ProfileBuilder;

use crate::harness::{CPU, Server, TestClock, now_nanos, urlencode, wait_until};
use crate::tenancy::call;

#[test]
fn usage_is_metered_per_tenant_over_time_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hour = 3600;
    let t0 = now_nanos() / 1_000_000_000 / hour * hour; // the start of this hour
    let clock = TestClock::new(dir.path(), t0 + 60);
    let (key, value) = clock.env();
    let server = Server::start_with_env(
        dir.path(),
        &["--flush-interval-secs", "1"],
        &[(key, &value)],
    );
    let mut profile = ProfileBuilder::cpu().time(Nanos(now_nanos()));
    profile.sample(&["main", "work"], &[10, 100_000_000], &[]);
    let body = profile.gzip();
    let post = |tenant: &'static str| {
        let a = call(
            "POST",
            &format!("{}/ingest?name=meter&format=pprof", server.url),
            &[
                ("X-Scope-OrgID", tenant),
                ("Content-Type", "application/octet-stream"),
            ],
            Some(&body),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    };
    post("paying");
    post("paying");
    post("other");
    // A retry with the same idempotency key is stored once and metered once.
    for _ in 0..2 {
        let a = call(
            "POST",
            &format!("{}/ingest?name=meter&format=pprof", server.url),
            &[
                ("X-Scope-OrgID", "other"),
                ("Content-Type", "application/octet-stream"),
                ("Idempotency-Key", "once"),
            ],
            Some(&body),
        );
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // Two hours later by the node's clock.
    clock.set(t0 + 2 * hour + 60);
    post("paying");
    let merge = format!(
        "{}/api/v1/merge?query={}&from=now-3h&until=now%2B1h&format=folded",
        server.url,
        urlencode(&format!("{CPU}{{}}"))
    );
    // Queries count once the rows are in blocks (scanned bytes are block bytes).
    let flushed = wait_until(Duration::from_secs(20), || {
        crate::harness::metric(&server, "firn_blocks") > 0
    });
    assert!(flushed);
    let q = call("GET", &merge, &[("X-Scope-OrgID", "paying")], None);
    assert_eq!(q.status, 200, "{}", q.body);

    let usage = |from: i64, to: i64| {
        let a = call(
            "GET",
            &format!("{}/api/v1/admin/usage?from={from}&to={to}", server.url),
            &[],
            None,
        );
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()["tenants"].clone()
    };
    let first_hour = usage(t0, t0 + hour);
    let bytes = body.len() as u64;
    assert_eq!(first_hour["paying"]["ingested_bytes"], 2 * bytes);
    // One sample, in each of the profile's two sample types.
    assert_eq!(first_hour["paying"]["ingested_samples"], 4);
    assert_eq!(first_hour["paying"]["ingested_profiles"], 4);
    assert_eq!(first_hour["other"]["ingested_bytes"], 2 * bytes);
    assert_eq!(first_hour["paying"]["queries"], 0);
    let later = usage(t0 + 2 * hour, t0 + 3 * hour);
    assert_eq!(later["paying"]["ingested_bytes"], bytes);
    assert_eq!(later["paying"]["queries"], 1);
    assert!(
        later["paying"]["scanned_bytes"].as_u64().expect("scanned") > 0,
        "{later}"
    );
    // Other wrote nothing then; its rows are still stored.
    assert_eq!(later["other"]["ingested_bytes"], 0, "{later}");
    assert!(
        later["other"]["stored_bytes"].as_u64().expect("stored") > 0,
        "{later}"
    );
    let all = usage(t0, t0 + 3 * hour);
    assert_eq!(all["paying"]["ingested_bytes"], 3 * bytes);
    assert_eq!(
        all["paying"]["active_series"], 2,
        "one series per sample type: {all}"
    );
    assert!(
        all["paying"]["stored_bytes"].as_u64().expect("stored") > 0,
        "{all}"
    );
    // /metrics: the same per tenant.
    let metrics = call("GET", &format!("{}/metrics", server.url), &[], None).body;
    assert!(
        metrics.contains(&format!(
            "firn_tenant_ingested_bytes_total{{tenant=\"paying\"}} {}",
            3 * bytes
        )),
        "{metrics}"
    );
    // Paying's two series are active; other's went idle two hours ago by the node's clock.
    assert!(
        metrics.contains("firn_tenancy_series_tracked 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("firn_tenant_queries_total{tenant=\"paying\"} 1"),
        "{metrics}"
    );
    // Bad ranges are refused with the field named.
    let bad = call(
        "GET",
        &format!("{}/api/v1/admin/usage?from=yesterday", server.url),
        &[],
        None,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("from"), "{}", bad.body);
}
