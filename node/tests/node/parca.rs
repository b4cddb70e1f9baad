//! Parca's query service with a real gRPC client (grpcio, stubs generated from the repo's
//! .proto files): two profiles written with `WriteRaw`, then every served RPC and report,
//! checked against what the profiles hold; malformed and unserved requests get gRPC's own
//! codes and the node keeps serving. gRPC-Web and Connect JSON (Timestamps as RFC 3339) are
//! checked on the same node.

use std::collections::BTreeMap;
use std::process::Command;

use firn_node::api::parca::messages::{ProfileTypesRequest, ProfileTypesResponse};
use firn_storage::Nanos;
use firn_storage::pprof::{DecodeLimits, decode};
use firn_storage::testing::ProfileBuilder;
use firn_storage::testing::go::per_function;
use serde_json::{Value, json};

use crate::harness::{Server, now_nanos};

const SECOND: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

fn python_with_grpc_tools() -> Option<String> {
    let python = std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, google.protobuf"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(python)
}

/// `(function, [flat, cumulative, diff])` as the client prints a top table.
fn top(v: &Value) -> BTreeMap<String, [i64; 3]> {
    serde_json::from_value(v.clone()).expect("a top table")
}

#[test]
fn parca_query_service_with_generated_stubs() {
    let Some(python) = python_with_grpc_tools() else {
        eprintln!("skipped: no Python with grpcio/grpcio-tools (bash .ci/test installs them)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    // Whole milliseconds: Parca selects a single profile by its millisecond.
    let t_b = (now_nanos() - 60 * SECOND) / MS * MS;
    let t_a = t_b - 60 * SECOND;
    let mut a = ProfileBuilder::cpu().time(Nanos(t_a));
    a.sample(&["main", "hot"], &[7, 70 * MS], &[]);
    a.sample(&["main", "cold"], &[3, 30 * MS], &[]);
    let mut b = ProfileBuilder::cpu().time(Nanos(t_b));
    b.sample(&["main", "hot"], &[2, 20 * MS], &[]);
    b.sample(&["main", "grown"], &[8, 80 * MS], &[]);
    let (file_a, file_b) = (dir.path().join("a.pb.gz"), dir.path().join("b.pb.gz"));
    std::fs::write(&file_a, a.gzip()).expect("write a");
    std::fs::write(&file_b, b.gzip()).expect("write b");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).expect("stubs dir");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/parca_query_client.py"
    );
    let output = Command::new(&python)
        .arg(script)
        .arg(server.url.trim_start_matches("http://"))
        .arg(&stubs)
        .arg(&file_a)
        .arg(&file_b)
        .arg((t_a / MS).to_string())
        .arg((t_b / MS).to_string())
        .output()
        .expect("run the Parca query client");
    assert!(
        output.status.success(),
        "the Parca query client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("a JSON summary");

    assert_eq!(
        out["types"],
        json!([
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta",
            "process_cpu:samples:count:cpu:nanoseconds:delta"
        ]),
        "Parca lists the delta kind of each type"
    );
    assert_eq!(out["labels"], json!(["pod", "service_name"]));
    assert_eq!(out["pods"], json!(["a", "b"]));

    // MERGE as pprof: gzipped, the merged values of both profiles per function.
    use base64::Engine;
    let gz = base64::engine::general_purpose::STANDARD
        .decode(out["pprof_gzip_base64"].as_str().expect("pprof"))
        .expect("base64");
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "Parca's pprof report is gzipped");
    let merged = decode(&gz, DecodeLimits::default())
        .expect("the pprof report decodes")
        .into_profile();
    let expected = BTreeMap::from([
        ("cold".to_owned(), (30 * MS, 30 * MS)),
        ("grown".to_owned(), (80 * MS, 80 * MS)),
        ("hot".to_owned(), (90 * MS, 90 * MS)),
        ("main".to_owned(), (0, 200 * MS)),
    ]);
    assert_eq!(per_function(&merged, 0), expected);
    assert_eq!(out["pprof_total"], 200 * MS);

    let as_top = |m: &BTreeMap<String, (i64, i64)>| -> BTreeMap<String, [i64; 3]> {
        m.iter()
            .map(|(f, &(flat, cum))| (f.clone(), [flat, cum, 0]))
            .collect()
    };
    assert_eq!(top(&out["top"]), as_top(&expected));

    // The flame graph table, resolved through its tables by the client.
    assert_eq!(out["table_root"], 200 * MS);
    assert_eq!(out["table_unit"], "nanoseconds");
    assert_eq!(
        out["table"],
        json!({
            "main": [200 * MS, 0],
            "main;hot": [90 * MS, 0],
            "main;grown": [80 * MS, 0],
            "main;cold": [30 * MS, 0],
        })
    );

    // SINGLE: the profile at b's millisecond only.
    assert_eq!(
        top(&out["single_top"]),
        BTreeMap::from([
            ("grown".to_owned(), [80 * MS, 80 * MS, 0]),
            ("hot".to_owned(), [20 * MS, 20 * MS, 0]),
            ("main".to_owned(), [0, 100 * MS, 0]),
        ])
    );
    // DIFF, absolute: b's values, and the change from a.
    assert_eq!(
        top(&out["diff_top"]),
        BTreeMap::from([
            ("grown".to_owned(), [80 * MS, 80 * MS, 80 * MS]),
            ("hot".to_owned(), [20 * MS, 20 * MS, -50 * MS]),
            ("main".to_owned(), [0, 100 * MS, 0]),
        ])
    );

    // QueryRange: one series per label set by default, summed per step.
    assert_eq!(
        out["range"],
        json!([
            {"labels": {"pod": "a", "service_name": "parca-q"}, "values": [100 * MS],
             "counts": [1], "sample_type": "cpu"},
            {"labels": {"pod": "b", "service_name": "parca-q"}, "values": [100 * MS],
             "counts": [1], "sample_type": "cpu"},
        ])
    );
    assert_eq!(out["range_sum_by"], json!([{"service_name": "parca-q"}]));

    for (case, code, needle) in [
        ("no_type", "INVALID_ARGUMENT", "names no profile type"),
        ("four_parts", "INVALID_ARGUMENT", "merge.query"),
        ("callgraph", "UNIMPLEMENTED", "REPORT_TYPE_CALLGRAPH"),
        ("backwards", "INVALID_ARGUMENT", "is after end"),
        ("no_merge", "INVALID_ARGUMENT", "merge is required"),
        ("bad_label", "INVALID_ARGUMENT", "label_name"),
        ("group_by", "UNIMPLEMENTED", "group_by"),
    ] {
        let e = &out["errors"][case];
        assert_eq!(e["code"], code, "{case}: {e}");
        assert!(
            e["details"].as_str().unwrap_or_default().contains(needle),
            "{case}: {e}"
        );
    }
    assert_eq!(out["again"]["code"], "OK");

    // gRPC-Web: the same service framed over HTTP/1.1.
    let request = prost::Message::encode_to_vec(&ProfileTypesRequest::default());
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(request.len() as u32).to_be_bytes());
    framed.extend_from_slice(&request);
    let r = ureq::post(&format!(
        "{}/parca.query.v1alpha1.QueryService/ProfileTypes",
        server.url
    ))
    .set("Content-Type", "application/grpc-web+proto")
    .send_bytes(&framed)
    .expect("gRPC-Web answers 200");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).expect("body");
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    let types: ProfileTypesResponse =
        prost::Message::decode(&bytes[5..5 + len]).expect("a ProfileTypesResponse");
    assert_eq!(types.types.len(), 2);
    assert!(
        types
            .types
            .iter()
            .all(|t| t.delta && t.name == "process_cpu")
    );

    // Connect JSON: Timestamps and Durations in protojson's forms.
    let rfc3339 = |ns: i64| firn_node::time::format_rfc3339(ns.div_euclid(SECOND), 0);
    let (status, body) = server.connect_json(
        "parca.query.v1alpha1.QueryService/QueryRange",
        &json!({
            "query": "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta{pod=\"a\"}",
            "start": rfc3339(t_a - 60 * SECOND),
            "end": rfc3339(t_b + 60 * SECOND),
            "step": "60s",
        }),
        "anonymous",
    );
    assert_eq!(status, 200, "{body}");
    let sample = &body["series"][0]["samples"][0];
    assert_eq!(sample["value"], (100 * MS).to_string(), "{body}");
    assert_eq!(sample["duration"], (60 * SECOND).to_string(), "{body}");
    let at = firn_node::time::parse_rfc3339(sample["timestamp"].as_str().expect("a timestamp"))
        .expect("RFC 3339");
    assert!(
        (0..60 * SECOND).contains(&(t_a - at.0)),
        "a point is labelled with the start of its step: {at:?} for {t_a}"
    );
    let (status, body) = server.connect_json(
        "parca.query.v1alpha1.QueryService/QueryRange",
        &json!({"query": "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}", "start": "yesterday"}),
        "anonymous",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("start"),
        "{body}"
    );
}
