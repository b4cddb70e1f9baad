//! A real gRPC client against a live `firn serve`: grpcio (HTTP/2 over cleartext) pushes a
//! profile with gzip-compressed messages and calls the querier; protobuf's reference JSON
//! mapping reads the Connect JSON answers. `FIRN_TEST_PYTHON` names a Python with `grpcio` and
//! `protobuf` (`bash .ci/test` installs them); without them the test is skipped with a note.

use std::process::Command;

use firn_storage::Nanos;
use firn_storage::testing::ProfileBuilder;
use serde_json::{Value, json};

use crate::harness::{CPU, Server, now_nanos};

fn has_modules(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import grpc, google.protobuf"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn grpcio_client_pushes_and_queries_over_h2c() {
    let python = std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    if !has_modules(&python) {
        eprintln!("skipped: {python} has no grpcio/protobuf (bash .ci/test installs them)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    // main;hot 7 samples and main;cold 3, 10 ms each, a minute ago.
    let mut profile = ProfileBuilder::cpu().time(Nanos(now_nanos() - 60_000_000_000));
    profile.sample(&["main", "hot"], &[7, 70_000_000], &[]);
    profile.sample(&["main", "cold"], &[3, 30_000_000], &[]);
    let pprof = dir.path().join("profile.pb.gz");
    std::fs::write(&pprof, profile.gzip()).expect("write the profile");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/grpc_client.py");
    let target = server.url.trim_start_matches("http://");
    let output = Command::new(&python)
        .args([script, target])
        .arg(&pprof)
        .arg("grpc-tenant")
        .output()
        .expect("run the gRPC client");
    assert!(
        output.status.success(),
        "the gRPC client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("a JSON summary");
    let total = 100_000_000i64;

    assert_eq!(out["push"], "ok");
    assert_eq!(
        out["profile_types"],
        json!([CPU, "process_cpu:samples:count:cpu:nanoseconds"])
    );
    for name in ["region", "service_name", "__name__"] {
        assert!(
            out["label_names"]
                .as_array()
                .expect("names")
                .contains(&json!(name)),
            "{name}: {}",
            out["label_names"]
        );
    }
    assert_eq!(out["region_values"], json!(["eu-north"]));
    assert_eq!(
        out["series"][0],
        json!({ "__profile_type__": CPU, "service_name": "grpc-app" })
    );
    assert_eq!(out["flamegraph_total"], total);
    assert_eq!(
        out["flamegraph_names"],
        json!(["total", "main", "cold", "hot"])
    );
    assert_eq!(
        out["flamegraph_levels"],
        json!([
            [0, total, 0, 0],
            [0, total, 0, 1],
            [0, 30_000_000, 30_000_000, 2, 0, 70_000_000, 70_000_000, 3]
        ])
    );
    assert_eq!(out["stacktraces_pprof_total"], total);
    assert!(out["tree_bytes"].as_u64().expect("tree") > 10);
    assert_eq!(out["merge_profile_total"], total);
    assert_eq!(
        out["merge_profile_functions"],
        json!(["cold", "hot", "main"])
    );
    assert_eq!(
        out["select_series"],
        json!([{ "labels": { "region": "eu-north" }, "sum": total as f64 }])
    );
    assert_eq!(out["diff_ticks"], json!([total, 0]));
    assert_eq!(
        out["other_tenant_total"], 0,
        "tenants are apart over gRPC too"
    );

    let errors = &out["errors"];
    assert_eq!(errors["bad_selector"][0], "INVALID_ARGUMENT");
    assert!(
        errors["bad_selector"][1]
            .as_str()
            .expect("message")
            .starts_with("label_selector: selector"),
        "{errors}"
    );
    assert_eq!(errors["reversed_range"][0], "INVALID_ARGUMENT");
    assert!(
        errors["reversed_range"][1]
            .as_str()
            .expect("message")
            .contains("is after end"),
        "{errors}"
    );
    assert_eq!(errors["dot"][0], "UNIMPLEMENTED");

    // The same answers through Connect JSON, read by protobuf's strict JSON parser.
    let j = &out["json"];
    assert_eq!(j["flamegraph_total"], total);
    assert_eq!(j["flamegraph_levels"], out["flamegraph_levels"]);
    assert_eq!(j["stacktraces_pprof_total"], total);
    assert_eq!(j["merge_profile_total"], total);
    assert_eq!(j["profile_types"], out["profile_types"]);
    assert_eq!(j["series"], 2, "a label set per profile type");
    assert_eq!(j["points_sum"], total as f64);
    assert_eq!(j["diff_ticks"], json!([total, total]));
}

/// Parca Agent's write path with a real gRPC client (grpcio, stubs generated from the repo's
/// .proto): a profile written with `WriteRaw` merges to its totals; malformed requests get
/// gRPC's own INVALID_ARGUMENT and the node keeps serving.
#[test]
fn parca_write_raw_over_grpc_with_generated_stubs() {
    let python = std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    if !has_modules(&python)
        || !Command::new(&python)
            .args(["-c", "import grpc_tools"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        eprintln!("skipped: {python} has no grpcio/grpcio-tools (bash .ci/test installs them)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mut profile = ProfileBuilder::cpu().time(Nanos(now_nanos() - 60_000_000_000));
    profile.sample(&["main", "parca_hot"], &[7, 70_000_000], &[]);
    profile.sample(&["main", "parca_cold"], &[3, 30_000_000], &[]);
    let pprof = dir.path().join("profile.pb.gz");
    std::fs::write(&pprof, profile.gzip()).expect("write the profile");
    let stubs = dir.path().join("stubs");
    std::fs::create_dir_all(&stubs).expect("stubs dir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/parca_client.py");
    let output = Command::new(&python)
        .arg(script)
        .arg(server.url.trim_start_matches("http://"))
        .arg(&pprof)
        .arg(&stubs)
        .output()
        .expect("run the Parca client");
    assert!(
        output.status.success(),
        "the Parca client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("a JSON summary");
    assert_eq!(out["write"]["code"], "OK", "{out}");
    assert_eq!(out["again"]["code"], "OK", "{out}");
    assert_eq!(out["no_name"]["code"], "INVALID_ARGUMENT", "{out}");
    assert!(
        out["no_name"]["details"]
            .as_str()
            .unwrap_or_default()
            .contains("__name__"),
        "{out}"
    );
    assert_eq!(out["garbage"]["code"], "INVALID_ARGUMENT", "{out}");
    // Written twice (no idempotency key): twice the totals, under Parca's profile name.
    let (status, folded) = crate::harness::get(&format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1m&format=folded",
        server.url,
        crate::harness::urlencode(
            "parca_agent:cpu:nanoseconds:cpu:nanoseconds{service_name=\"parca-app\"}"
        )
    ));
    assert_eq!(status, 200, "{folded}");
    let mut lines: Vec<&str> = folded.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["main;parca_cold 60000000", "main;parca_hot 140000000"]
    );
    // Parca's REST path takes the same message as JSON.
    use base64::Engine;
    let body = json!({"series": [{
        "labels": {"labels": [
            {"name": "__name__", "value": "parca_agent"},
            {"name": "service_name", "value": "parca-rest"}
        ]},
        "samples": [{"rawProfile": base64::engine::general_purpose::STANDARD.encode(profile.gzip())}],
    }]});
    let (status, text) = crate::harness::post(
        &format!("{}/profiles/writeraw", server.url),
        "application/json",
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let (_, folded) = crate::harness::get(&format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1m&format=folded",
        server.url,
        crate::harness::urlencode(
            "parca_agent:cpu:nanoseconds:cpu:nanoseconds{service_name=\"parca-rest\"}"
        )
    ));
    assert!(folded.contains("main;parca_hot 70000000"), "{folded}");
}

/// A Raft message meant for another node is refused by whichever node answers at the address
/// (a StatefulSet pod scaled away comes back there as a new node): the sender's leader must
/// see its old follower as unreachable, never take the new node's empty log for its. A
/// message meant for this node, or that names none, reaches its group (which answers an empty
/// vote as malformed).
#[test]
fn a_raft_message_meant_for_another_node_is_refused() {
    use firn_node::cluster::rpc::pb;
    use firn_node::raft::wire::{Reply, RpcKind, decode_reply};
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--node-id", "7"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut cluster = pb::cluster_client::ClusterClient::new(channel);
        let request = |target| pb::RaftRequest {
            group: 0,
            kind: RpcKind::Vote as u32,
            body: Default::default(),
            target,
        };
        let status = cluster
            .raft(request(3))
            .await
            .expect_err("meant for node 3");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
        assert!(
            status.message().contains("node 7") && status.message().contains("node 3"),
            "{status}"
        );
        for target in [7, 0] {
            let reply = cluster
                .raft(request(target))
                .await
                .unwrap_or_else(|s| panic!("meant for node {target}: {s}"))
                .into_inner();
            match decode_reply(&reply.body).expect("a Raft reply") {
                Reply::Refused(why) => assert!(why.contains("vote"), "{why}"),
                _ => panic!("an empty vote is answered as malformed"),
            }
        }
    });
}
