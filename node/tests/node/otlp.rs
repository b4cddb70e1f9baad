//! OTLP profiles from a real exporter stack: the `opentelemetry-proto` package's generated
//! messages and gRPC stub, fed by a pprof-to-OTLP converter in the test's own code
//! (`tests/clients/otlp_client.py`). Go `runtime/pprof` profiles go over gRPC, OTLP/HTTP
//! protobuf (gzipped) and OTLP/HTTP JSON; the merged pprof Firn serves must match
//! `go tool pprof -proto` merging the same files, function by function, for every sample
//! type. A link on the first file's samples selects them by trace id. Malformed requests get
//! each transport's own error shape and the node keeps serving.

use std::process::Command;

use firn_storage::testing::go::{merge, per_function, profiles, type_id};
use serde_json::Value;

use crate::harness::{Server, fetch_pprof};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn python_with_otlp() -> Option<String> {
    let python = std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(&python)
        .args([
            "-c",
            "import grpc, grpc_tools, opentelemetry.proto.profiles.v1development",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then_some(python)
}

#[test]
fn otlp_profiles_from_go_match_go_tool_pprof() {
    let Some(python) = python_with_otlp() else {
        eprintln!(
            "skipped: no Python with grpcio and opentelemetry-proto (bash .ci/test installs them)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let files = profiles(dir.path(), 3, 1);
    let (heap, cpu): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|f| f.to_string_lossy().contains("heap"));
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(data.path(), &[]);
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).expect("stubs dir");
    // gRPC, HTTP protobuf, then HTTP JSON (the heap profile and the last CPU one).
    let order = [&cpu[0], &cpu[1], &cpu[2], &heap[0]];
    let output = Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/otlp_client.py"
        ))
        .arg(server.url.trim_start_matches("http://"))
        .arg(&server.url)
        .arg(&stubs)
        .arg(TRACE_ID)
        .args(order)
        .output()
        .expect("run the OTLP client");
    assert!(
        output.status.success(),
        "the OTLP client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("a JSON summary");
    let sent = out["sent"].as_array().expect("sent");
    assert_eq!(sent.len(), 4, "{out}");
    for s in &sent[1..] {
        assert_eq!(s["status"], 200, "{out}");
    }
    assert_eq!(sent[1]["type"], "application/x-protobuf");
    assert_eq!(sent[2]["type"], "application/json");
    assert_eq!(sent[2]["reply"], serde_json::json!({}), "an empty response");

    for (inputs, name) in [(&cpu, "process_cpu"), (&heap, "memory")] {
        let oracle = merge(inputs);
        for index in 0..oracle.sample_type.len() {
            let id = type_id(&oracle, name, index);
            let ours = fetch_pprof(&server, &format!("{id}{{service_name=\"otel-go\"}}"), "");
            let theirs = per_function(&oracle, index);
            assert!(!theirs.is_empty(), "{id}: the oracle has samples");
            assert_eq!(
                per_function(&ours, 0),
                theirs,
                "{id}: flat and cumulative per function"
            );
        }
    }
    // Resource attributes are labels.
    let (status, values) = crate::harness::get(&format!(
        "{}/api/v1/labels/deployment_environment/values",
        server.url
    ));
    assert_eq!(status, 200, "{values}");
    assert!(values.contains("\"test\""), "{values}");

    // The trace id selects the first file's samples only.
    let first = merge(&cpu[..1]);
    let id = type_id(&first, "process_cpu", 1);
    let traced = fetch_pprof(
        &server,
        &format!("{id}{{service_name=\"otel-go\"}}"),
        &format!("&trace_id={TRACE_ID}"),
    );
    assert_eq!(per_function(&traced, 0), per_function(&first, 1));

    // Malformed requests, each in its transport's shape.
    assert_eq!(out["grpc_bad_zero"]["code"], "INVALID_ARGUMENT", "{out}");
    assert!(
        out["grpc_bad_zero"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("dictionary.string_table[0]"),
        "{out}"
    );
    let bad = &out["http_bad_index"];
    assert_eq!(bad["status"], 400, "{out}");
    assert_eq!(bad["type"], "application/x-protobuf", "{out}");
    assert_eq!(
        bad["code"], 3,
        "google.rpc.Status with INVALID_ARGUMENT: {out}"
    );
    assert!(
        bad["message"]
            .as_str()
            .unwrap_or_default()
            .contains("profiles[0].samples[0].stack_index is 1000000"),
        "{out}"
    );
    assert_eq!(out["http_garbage"]["status"], 400, "{out}");
    assert_eq!(out["http_bad_json"]["status"], 400, "{out}");
    assert_eq!(out["http_bad_json"]["type"], "application/json", "{out}");
    assert!(
        out["http_bad_json"]["body"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("resourceProfiles"),
        "{out}"
    );
    assert_eq!(out["http_bad_type"]["status"], 415, "{out}");
    assert_eq!(out["again"]["code"], "OK", "{out}");
}
