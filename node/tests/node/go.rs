//! Go `runtime/pprof` profiles sent the way pyroscope-go sends them (multipart to `/ingest`),
//! as Push and as Parca Agent's `WriteRaw`; the merged pprof Firn serves (from
//! `/api/v1/merge` and from the querier's `SelectMergeProfile`) must match `go tool pprof
//! -proto` merging the same files, function by function, for every sample type. (OTLP's
//! oracle test is in `otlp.rs`.)

use firn_node::api::google;
use firn_node::api::push::{PushRequest, RawProfileSeries, RawSample};
use firn_node::api::querier::messages::SelectMergeProfileRequest;
use firn_node::api::types::LabelPair;
use firn_storage::pprof::{DecodeLimits, decode};
use firn_storage::testing::go::{merge, per_function, profiles, type_id};
use prost::Message;

use crate::harness::{Server, fetch_pprof, urlencode};

fn multipart(profile: &[u8]) -> (String, Vec<u8>) {
    let boundary = "firn-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(profile);
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"sample_type_config\"; filename=\"sample_type_config.json\"\r\n\r\n{{}}\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn merged_pprof_matches_go_tool_pprof() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = profiles(dir.path(), 3, 1);
    let (heap, cpu): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|f| f.to_string_lossy().contains("heap"));
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(data.path(), &[]);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    for file in &cpu {
        let (content_type, body) = multipart(&std::fs::read(file).expect("read"));
        let url = format!(
            "{}/ingest?name={}&from={}&until={}&spyName=gospy&sampleRate=100",
            server.url,
            urlencode("goapp{env=test,__session_id__=abc}"),
            now - 10_000_000_000,
            now
        );
        let (status, text) = crate::harness::post(&url, &content_type, &body);
        assert_eq!((status, text.as_str()), (200, ""), "multipart ingest");
    }
    let push = PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                LabelPair {
                    name: "__name__".into(),
                    value: "memory".into(),
                },
                LabelPair {
                    name: "service_name".into(),
                    value: "goapp".into(),
                },
            ],
            samples: heap
                .iter()
                .map(|f| RawSample {
                    raw_profile: std::fs::read(f).expect("read").into(),
                    id: String::new(),
                })
                .collect(),
            annotations: Vec::new(),
        }],
    };
    let (status, text) = crate::harness::post(
        &format!("{}/push.v1.PusherService/Push", server.url),
        "application/proto",
        &push.encode_to_vec(),
    );
    assert_eq!(status, 200, "{text}");

    for (inputs, name) in [(&cpu, "process_cpu"), (&heap, "memory")] {
        let oracle = merge(inputs);
        for index in 0..oracle.sample_type.len() {
            let id = type_id(&oracle, name, index);
            let ours = fetch_pprof(&server, &format!("{id}{{service_name=\"goapp\"}}"), "");
            let theirs = per_function(&oracle, index);
            assert!(!theirs.is_empty(), "{id}: the oracle has samples");
            assert_eq!(
                per_function(&ours, 0),
                theirs,
                "{id}: flat and cumulative per function"
            );
            let via_querier: google::Profile = server
                .connect_proto(
                    "querier.v1.QuerierService/SelectMergeProfile",
                    &SelectMergeProfileRequest {
                        profile_type_id: id.clone(),
                        label_selector: "{service_name=\"goapp\"}".into(),
                        start: 0,
                        end: (now / 1_000_000) as i64 + 3_600_000,
                        ..Default::default()
                    },
                    "anonymous",
                )
                .expect("SelectMergeProfile");
            let via_querier = decode(&via_querier.encode_to_vec(), DecodeLimits::default())
                .expect("the querier's pprof decodes")
                .into_profile();
            assert_eq!(
                per_function(&via_querier, 0),
                theirs,
                "{id}: SelectMergeProfile, flat and cumulative per function"
            );
        }
    }
}

/// Parca Agent's path: each Go CPU profile as one `WriteRaw` sample, sent as Connect proto
/// (the gRPC transport is the Python client's, in `grpc.rs`).
#[test]
fn write_raw_merges_match_go_tool_pprof() {
    use firn_node::api::parca::{Label, LabelSet, RawProfileSeries, RawSample, WriteRawRequest};
    let dir = tempfile::tempdir().expect("tempdir");
    let cpu: Vec<_> = profiles(dir.path(), 2, 1)
        .into_iter()
        .filter(|f| !f.to_string_lossy().contains("heap"))
        .collect();
    let data = tempfile::tempdir().expect("tempdir");
    let server = Server::start(data.path(), &[]);
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let request = WriteRawRequest {
        series: vec![RawProfileSeries {
            labels: Some(LabelSet {
                labels: vec![
                    label("__name__", "parca_agent"),
                    label("service_name", "parca-go"),
                ],
            }),
            samples: cpu
                .iter()
                .map(|f| RawSample {
                    raw_profile: std::fs::read(f).expect("read").into(),
                    executable_info: Vec::new(),
                })
                .collect(),
        }],
        ..Default::default()
    };
    let _: firn_node::api::parca::WriteRawResponse = server
        .connect_proto(
            "parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw",
            &request,
            "anonymous",
        )
        .expect("WriteRaw");
    let oracle = merge(&cpu);
    for index in 0..oracle.sample_type.len() {
        let id = type_id(&oracle, "parca_agent", index);
        let ours = fetch_pprof(&server, &format!("{id}{{service_name=\"parca-go\"}}"), "");
        let theirs = per_function(&oracle, index);
        assert!(!theirs.is_empty(), "{id}: the oracle has samples");
        assert_eq!(per_function(&ours, 0), theirs, "{id}: per function");
    }
}
