//! Go `runtime/pprof` profiles sent the way pyroscope-go sends them (multipart to `/ingest`)
//! and as Push; the merged pprof Firn serves (from `/api/v1/merge` and from the querier's
//! `SelectMergeProfile`) must match `go tool pprof -proto` merging the same files, function by
//! function, for every sample type.

use firn_node::api::google;
use firn_node::api::push::{PushRequest, RawProfileSeries, RawSample};
use firn_node::api::querier::messages::SelectMergeProfileRequest;
use firn_node::api::types::LabelPair;
use firn_storage::pprof::{DecodeLimits, decode};
use firn_storage::testing::go::{merge, per_function, profiles, type_id};
use prost::Message;

use crate::harness::{Server, urlencode};

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

fn fetch_pprof(server: &Server, selector: &str) -> firn_storage::pprof::Profile {
    let url = format!(
        "{}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format=pprof",
        server.url,
        urlencode(selector)
    );
    let response = ureq::get(&url).call().expect("merge");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut bytes).expect("body");
    decode(&bytes, DecodeLimits::default())
        .expect("Firn's pprof decodes")
        .into_profile()
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
            let ours = fetch_pprof(&server, &format!("{id}{{service_name=\"goapp\"}}"));
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
