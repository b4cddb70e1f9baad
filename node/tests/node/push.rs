//! `push.v1.PusherService/Push` over Connect against a live `firn serve`.

use std::io::Write;

use base64::Engine;
use firn_node::api::push::{PushRequest, RawProfileSeries, RawSample};
use firn_node::api::types::LabelPair;
use firn_storage::Nanos;
use firn_storage::testing::ProfileBuilder;
use prost::Message;

use crate::harness::{CPU, Server, post};

fn profile(leaf: &str, n: i64) -> Vec<u8> {
    let mut b = ProfileBuilder::cpu().time(Nanos(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as i64,
    ));
    b.sample(&["main", leaf], &[n, n * 10_000_000], &[]);
    b.gzip()
}

fn request(samples: Vec<Vec<u8>>) -> PushRequest {
    PushRequest {
        series: vec![RawProfileSeries {
            labels: vec![
                LabelPair {
                    name: "__name__".into(),
                    value: "process_cpu".into(),
                },
                LabelPair {
                    name: "service_name".into(),
                    value: "pusher".into(),
                },
            ],
            samples: samples
                .into_iter()
                .map(|p| RawSample {
                    raw_profile: p.into(),
                    id: "id".into(),
                })
                .collect(),
            annotations: Vec::new(),
        }],
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("compress");
    e.finish().expect("finish")
}

fn push(server: &Server, content_type: &str, gzipped: bool, body: Vec<u8>) -> (u16, String) {
    let url = format!("{}/push.v1.PusherService/Push", server.url);
    let mut request = ureq::post(&url)
        .set("Content-Type", content_type)
        .set("Connect-Protocol-Version", "1");
    let body = if gzipped {
        request = request.set("Content-Encoding", "gzip");
        gzip(&body)
    } else {
        body
    };
    match request.send_bytes(&body) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[test]
fn proto_and_json_pushes_are_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let proto = request(vec![profile("hot", 7)]).encode_to_vec();
    let (status, body) = push(&server, "application/proto", true, proto);
    assert_eq!((status, body.as_str()), (200, ""));

    let b64 = base64::engine::general_purpose::STANDARD.encode(profile("warm", 3));
    let json = format!(
        r#"{{"series":[{{"labels":[{{"name":"__name__","value":"process_cpu"}},{{"name":"service_name","value":"pusher"}}],"samples":[{{"rawProfile":"{b64}","ID":"x"}}]}}]}}"#
    );
    let (status, body) = push(&server, "application/json", false, json.into_bytes());
    assert_eq!((status, body.as_str()), (200, "{}"));

    let (_, folded) = server.merge(&format!("{CPU}{{service_name=\"pusher\"}}"), "folded");
    assert!(folded.contains("main;hot 70000000"), "{folded}");
    assert!(folded.contains("main;warm 30000000"), "{folded}");
}

#[test]
fn bad_samples_are_named_and_good_ones_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let mixed = request(vec![b"garbage".to_vec(), profile("kept", 1)]).encode_to_vec();
    let (status, body) = push(&server, "application/proto", false, mixed);
    assert_eq!(status, 200, "{body}");
    let bad = request(vec![b"garbage".to_vec()]).encode_to_vec();
    let (status, body) = push(&server, "application/proto", false, bad);
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("series[0].samples[0]") && body.contains("invalid_argument"),
        "{body}"
    );
    let (status, body) = push(&server, "text/plain", false, vec![0, 0, 0, 0, 0]);
    assert_eq!(status, 415, "{body}");
    let (status, body) = push(&server, "application/json", false, b"{not json".to_vec());
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(
        &format!("{}/push.v1.PusherService/Push", server.url),
        "application/proto",
        b"\xff\xff\xff",
    );
    assert_eq!(status, 400, "{body}");
    let (_, folded) = server.merge(&format!("{CPU}{{service_name=\"pusher\"}}"), "folded");
    assert_eq!(folded.trim(), "main;kept 10000000");
}
