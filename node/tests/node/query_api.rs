//! Firn's own query API (`/api/v1/`) against a live `firn serve`: series, labels, label
//! values, profile types and diff answer with what was ingested; a bad parameter is a 400
//! naming it.

use serde_json::{Value, json};

use crate::harness::{CPU, Server, get, urlencode};

/// `shop` prod: hash 30 + parse 10 samples; `shop` dev: gc 5; `api`: idle 7; 10 ms a sample.
fn fixture() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    for (name, text) in [
        (
            "shop.cpu{env=prod}",
            "main;serve;hash 30\nmain;serve;parse 10\n",
        ),
        ("shop.cpu{env=dev}", "main;gc 5\n"),
        ("api.cpu", "main;idle 7\n"),
    ] {
        let (status, body) = server.ingest_folded(name, text);
        assert_eq!(status, 200, "{body}");
    }
    (dir, server)
}

fn api(server: &Server, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    get(&format!("{}/api/v1/{path}?{}", server.url, query.join("&")))
}

fn api_json(server: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = api(server, path, params);
    assert_eq!(status, 200, "{path} {params:?}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {body:?}: {e}"))
}

#[test]
fn series_labels_types_and_diff_answer_what_was_ingested() {
    let (_dir, server) = fixture();
    let shop = format!("{CPU}{{service_name=\"shop\"}}");

    let types = api_json(&server, "profile-types", &[]);
    assert_eq!(types["profile_types"][0]["id"], CPU);
    assert_eq!(types["profile_types"][0]["sample_unit"], "nanoseconds");

    let names = api_json(&server, "labels", &[]);
    for name in ["env", "service_name", "__name__", "__profile_type__"] {
        assert!(
            names["names"]
                .as_array()
                .expect("names")
                .contains(&json!(name)),
            "{name}: {names}"
        );
    }
    let api_names = api_json(&server, "labels", &[("query", "{service_name=\"api\"}")]);
    assert!(
        !api_names["names"]
            .as_array()
            .expect("names")
            .contains(&json!("env"))
    );

    let env = api_json(&server, "labels/env/values", &[]);
    assert_eq!(
        env,
        json!({ "name": "env", "values": ["dev", "prod"], "next_cursor": null })
    );
    let none = api_json(
        &server,
        "labels/env/values",
        &[
            ("query", "{service_name=\"api\"}"),
            ("from", "now-2h"),
            ("until", "now"),
        ],
    );
    assert_eq!(none["values"], json!([]));
    let services = api_json(&server, "labels/service_name/values", &[]);
    assert_eq!(services["values"], json!(["api", "shop"]));
    let types = api_json(&server, "labels/__profile_type__/values", &[]);
    assert_eq!(types["values"], json!([CPU]));

    // One step over the range: one point per env, the sum of its samples.
    let series = api_json(
        &server,
        "series",
        &[
            ("query", &shop),
            ("group_by", "env"),
            ("step", "2h"),
            ("from", "now-1h"),
            ("until", "now"),
        ],
    );
    let series = series["series"].as_array().expect("series");
    let sums: Vec<(Value, f64)> = series
        .iter()
        .map(|s| {
            let points = s["points"].as_array().expect("points");
            (
                s["labels"]["env"].clone(),
                points.iter().map(|p| p[1].as_f64().expect("value")).sum(),
            )
        })
        .collect();
    assert_eq!(
        sums,
        [(json!("dev"), 50_000_000.0), (json!("prod"), 400_000_000.0)]
    );
    // The default step still sums to the same.
    let by_default = api_json(&server, "series", &[("query", &shop)]);
    let total: f64 = by_default["series"][0]["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p[1].as_f64().expect("value"))
        .sum();
    assert_eq!(total, 450_000_000.0);
    let top = api_json(
        &server,
        "series",
        &[
            ("query", CPU),
            ("group_by", "service_name"),
            ("limit", "1"),
            ("aggregation", "avg"),
        ],
    );
    assert_eq!(top["series"].as_array().expect("series").len(), 1);
    assert_eq!(top["series"][0]["labels"]["service_name"], "shop");

    let prod = format!("{CPU}{{env=\"prod\"}}");
    let dev = format!("{CPU}{{env=\"dev\"}}");
    let (status, folded) = api(
        &server,
        "diff",
        &[
            ("left_query", &prod),
            ("right_query", &dev),
            ("format", "folded"),
        ],
    );
    assert_eq!(status, 200, "{folded}");
    assert_eq!(
        folded,
        "main;gc 0 50000000\nmain;serve;hash 300000000 0\nmain;serve;parse 100000000 0\n"
    );
    let graph = api_json(
        &server,
        "diff",
        &[
            ("query", &shop),
            ("left_from", "now-1h"),
            ("right_from", "now-2h"),
        ],
    );
    assert_eq!(graph["root"]["total"], 450_000_000);
    assert_eq!(graph["root"]["right"], json!([450_000_000, 0]));

    // RFC 3339 and Unix times select the same rows as relative ones.
    let (status, folded) = api(
        &server,
        "merge",
        &[
            ("query", &prod),
            ("from", "2020-01-01T00:00:00Z"),
            ("until", "now"),
        ],
    );
    assert_eq!(status, 200, "{folded}");
    assert!(folded.contains("main;serve;hash 300000000"), "{folded}");
    let (_, folded) = api(
        &server,
        "merge",
        &[("query", &prod), ("from", "1577836800")],
    );
    assert!(folded.contains("main;serve;parse 100000000"), "{folded}");
}

#[test]
fn bad_parameters_are_a_400_naming_them() {
    let (_dir, server) = fixture();
    let q = CPU;
    // (path, parameters, what the message must say)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        ("merge", vec![], "`query` is required"),
        ("merge", vec![("query", "{a=}")], "query: selector"),
        ("merge", vec![("query", q), ("from", "yesterday")], "from: "),
        (
            "merge",
            vec![("query", q), ("until", "2024-13-01T00:00:00Z")],
            "until: ",
        ),
        (
            "merge",
            vec![("query", q), ("from", "now"), ("until", "now-1h")],
            "is after until",
        ),
        (
            "merge",
            vec![("query", q), ("format", "svg")],
            "format \"svg\"",
        ),
        (
            "merge",
            vec![("query", q), ("max_nodes", "99999999")],
            "max_nodes is 99999999",
        ),
        (
            "merge",
            vec![("query", q), ("max_nodes", "many")],
            "max_nodes",
        ),
        ("series", vec![], "`query` is required"),
        ("series", vec![("query", q), ("step", "fast")], "step: "),
        (
            "series",
            vec![("query", q), ("step", "1ms")],
            "the limit is 11000",
        ),
        ("series", vec![("query", q), ("step", "0")], "at least 1ms"),
        (
            "series",
            vec![("query", q), ("aggregation", "max")],
            "aggregation \"max\"",
        ),
        (
            "series",
            vec![("query", q), ("group_by", "env,a b")],
            "group_by[1] \"a b\"",
        ),
        (
            "series",
            vec![("query", q), ("from", "99999999999999999999")],
            "from: ",
        ),
        ("labels", vec![("query", "{")], "query: selector"),
        ("labels", vec![("until", "soon")], "until: "),
        ("labels/a%20b/values", vec![], "\"a b\""),
        ("labels/env/values", vec![("limit", "0")], "limit is 0"),
        ("labels/env/values", vec![("limit", "10001")], "1 to 10000"),
        ("labels/env/values", vec![("cursor", "zz")], "cursor \"zz\""),
        (
            "labels/env/values",
            vec![("from", "now+1h"), ("until", "now")],
            "is after until",
        ),
        ("profile-types", vec![("from", "x")], "from: "),
        (
            "diff",
            vec![],
            "`left_query` (or `query`, for both sides) is required",
        ),
        ("diff", vec![("left_query", q)], "`right_query`"),
        (
            "diff",
            vec![("query", q), ("right_from", "x")],
            "right_from: ",
        ),
        (
            "diff",
            vec![
                ("left_query", q),
                ("right_query", "process_cpu:samples:count:cpu:nanoseconds{}"),
            ],
            "one profile type",
        ),
        (
            "diff",
            vec![("query", q), ("format", "svg")],
            "format \"svg\"",
        ),
    ];
    for (path, params, needle) in cases {
        let (status, body) = api(&server, path, &params);
        assert_eq!(status, 400, "{path} {params:?}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(error["code"], "invalid_argument", "{path}: {body}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{path} {params:?}: {message}");
    }
    // Still serving, nothing changed.
    let (status, folded) = api(&server, "merge", &[("query", q)]);
    assert_eq!(status, 200);
    assert!(folded.contains("main;idle 70000000"), "{folded}");
}

/// A label's values come a page at a time (`limit`, default 1,000), each page with the
/// `next_cursor` that starts the next; following them lists every value once, in order.
#[test]
fn label_values_are_paginated_with_a_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let pods: Vec<String> = (0..23).map(|i| format!("p-{i:02}")).collect();
    for pod in &pods {
        let (status, body) =
            server.ingest_folded(&format!("paged.cpu{{pod={pod}}}"), "main;work 1\n");
        assert_eq!(status, 200, "{body}");
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = vec![("limit", "10")];
        if let Some(c) = &cursor {
            params.push(("cursor", c.as_str()));
        }
        let page = api_json(&server, "labels/pod/values", &params);
        let values = page["values"].as_array().expect("values");
        assert!(values.len() <= 10, "{page}");
        seen.extend(
            values
                .iter()
                .map(|v| v.as_str().expect("a value").to_owned()),
        );
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, pods);
    // The default page holds them all here, and says there is no next.
    let all = api_json(&server, "labels/pod/values", &[]);
    assert_eq!(all["values"].as_array().map(Vec::len), Some(23));
    assert_eq!(all["next_cursor"], json!(null));
    // A prefix narrows the values, and pages through them the same way.
    let first = api_json(
        &server,
        "labels/pod/values",
        &[("prefix", "p-1"), ("limit", "6")],
    );
    let tens: Vec<&str> = (10..16).map(|i| pods[i].as_str()).collect();
    assert_eq!(first["values"], json!(tens), "{first}");
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let rest = api_json(
        &server,
        "labels/pod/values",
        &[("prefix", "p-1"), ("limit", "6"), ("cursor", cursor)],
    );
    let tens: Vec<&str> = (16..20).map(|i| pods[i].as_str()).collect();
    assert_eq!(rest["values"], json!(tens), "{rest}");
    assert_eq!(rest["next_cursor"], json!(null));
    let long = "x".repeat(4097);
    let (status, body) = get(&format!(
        "{}/api/v1/labels/pod/values?prefix={long}",
        server.url
    ));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("prefix is 4097 bytes"), "{body}");
}
