//! `querier.v1.QuerierService` over Connect (proto and JSON) against a live `firn serve` with
//! profiles pushed in: every RPC answers with the values that went in, and bad input is a 4xx
//! naming the field.

use firn_node::api::google;
use firn_node::api::push::{PushRequest, PushResponse, RawProfileSeries, RawSample};
use firn_node::api::querier::messages::{
    DiffRequest, DiffResponse, FlameGraph, ProfileFormat, ProfileTypesRequest,
    ProfileTypesResponse, SelectMergeProfileRequest, SelectMergeStacktracesRequest,
    SelectMergeStacktracesResponse, SelectSeriesRequest, SelectSeriesResponse, SeriesRequest,
    SeriesResponse,
};
use firn_node::api::types::{
    LabelNamesRequest, LabelNamesResponse, LabelPair, LabelValuesRequest, LabelValuesResponse,
};
use firn_storage::Nanos;
use firn_storage::testing::ProfileBuilder;
use serde_json::{Value, json};

use crate::harness::{CPU, RpcError, Server, gzip, now_nanos};

const TENANT: &str = "querier-tenant";
const SAMPLES: &str = "process_cpu:samples:count:cpu:nanoseconds";
const Q: &str = "querier.v1.QuerierService";

/// What the fixture pushed, in CPU nanoseconds: api = hot 8 + cold 3 samples over two
/// profiles one second apart, web = web 5 samples; 10 ms a sample.
const API_TOTAL: i64 = 110_000_000;
const WEB_TOTAL: i64 = 50_000_000;

struct Fixture {
    server: Server,
    _dir: tempfile::TempDir,
    /// A range in ms that holds every profile.
    start: i64,
    end: i64,
}

fn profile(time: i64, samples: &[(&[&str], i64)]) -> Vec<u8> {
    let mut b = ProfileBuilder::cpu().time(Nanos(time));
    for (stack, n) in samples {
        b.sample(stack, &[*n, n * 10_000_000], &[]);
    }
    b.gzip()
}

fn series(service: &str, region: &str, profiles: Vec<Vec<u8>>) -> RawProfileSeries {
    RawProfileSeries {
        labels: vec![
            LabelPair::new("__name__", "process_cpu"),
            LabelPair::new("service_name", service),
            LabelPair::new("region", region),
        ],
        samples: profiles
            .into_iter()
            .map(|p| RawSample {
                raw_profile: p.into(),
                id: String::new(),
            })
            .collect(),
        annotations: Vec::new(),
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let t = now_nanos() - 600_000_000_000;
    let push = PushRequest {
        series: vec![
            series(
                "api",
                "eu",
                vec![
                    profile(t, &[(&["main", "hot"], 7), (&["main", "cold"], 3)]),
                    profile(t + 1_000_000_000, &[(&["main", "hot"], 1)]),
                ],
            ),
            series("web", "us", vec![profile(t, &[(&["main", "web"], 5)])]),
        ],
    };
    let _: PushResponse = server
        .connect_proto("push.v1.PusherService/Push", &push, TENANT)
        .expect("push");
    let now_ms = now_nanos() / 1_000_000;
    Fixture {
        server,
        _dir: dir,
        start: now_ms - 3_600_000,
        end: now_ms + 60_000,
    }
}

impl Fixture {
    fn proto<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        method: &str,
        request: &Req,
    ) -> Resp {
        self.server
            .connect_proto(&format!("{Q}/{method}"), request, TENANT)
            .unwrap_or_else(|e| panic!("{method}: {e:?}"))
    }

    fn proto_err<Req: prost::Message>(&self, method: &str, request: &Req) -> RpcError {
        match self.server.connect_proto::<Req, PushResponse>(
            &format!("{Q}/{method}"),
            request,
            TENANT,
        ) {
            Ok(_) => panic!("{method}: expected an error"),
            Err(e) => e,
        }
    }

    fn json(&self, method: &str, request: Value) -> Value {
        let (status, body) = self
            .server
            .connect_json(&format!("{Q}/{method}"), &request, TENANT);
        assert_eq!(status, 200, "{method}: {body}");
        body
    }

    fn select(&self, selector: &str, format: ProfileFormat) -> SelectMergeStacktracesRequest {
        SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: selector.into(),
            start: self.start,
            end: self.end,
            format: format as i32,
            ..Default::default()
        }
    }
}

/// `(absolute x, total, self, name)` per node, per level.
fn decode_levels(graph: &FlameGraph) -> Vec<Vec<(i64, i64, i64, String)>> {
    graph
        .levels
        .iter()
        .map(|level| {
            let mut end = 0;
            level
                .values
                .chunks(4)
                .map(|n| {
                    let x = n[0] + end;
                    end = x + n[1];
                    (x, n[1], n[2], graph.names[n[3] as usize].clone())
                })
                .collect()
        })
        .collect()
}

fn pprof_total(p: &google::Profile) -> i64 {
    p.sample.iter().map(|s| s.value[0]).sum()
}

#[test]
fn every_rpc_over_connect_proto_answers_what_was_pushed() {
    let f = fixture();
    let (start, end) = (f.start, f.end);

    let types: ProfileTypesResponse = f.proto("ProfileTypes", &ProfileTypesRequest { start, end });
    let ids: Vec<&str> = types.profile_types.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [CPU, SAMPLES]);
    assert_eq!(types.profile_types[0].sample_unit, "nanoseconds");
    let recent: ProfileTypesResponse =
        f.proto("ProfileTypes", &ProfileTypesRequest { start: 0, end: 0 });
    assert_eq!(
        recent.profile_types.len(),
        2,
        "zero times mean the last hour"
    );

    let names: LabelNamesResponse = f.proto(
        "LabelNames",
        &LabelNamesRequest {
            matchers: vec![],
            start,
            end,
        },
    );
    for name in ["__name__", "__profile_type__", "region", "service_name"] {
        assert!(names.names.contains(&name.to_owned()), "{name}: {names:?}");
    }

    let values = |name: &str, matchers: &[&str]| -> Vec<String> {
        let r: LabelValuesResponse = f.proto(
            "LabelValues",
            &LabelValuesRequest {
                name: name.into(),
                matchers: matchers.iter().map(|m| m.to_string()).collect(),
                start,
                end,
            },
        );
        r.names
    };
    assert_eq!(values("service_name", &[]), ["api", "web"]);
    assert_eq!(values("service_name", &[r#"{region="eu"}"#]), ["api"]);
    assert_eq!(
        values("service_name", &[r#"{region="eu"}"#, r#"{region="us"}"#]),
        ["api", "web"],
        "selectors are a union"
    );
    assert_eq!(values("__name__", &[]), ["process_cpu"]);
    assert_eq!(
        values("__profile_type__", &[r#"{service_name="web"}"#]),
        [CPU, SAMPLES]
    );
    assert!(values("service_name", &[r#"{__type__="nope"}"#]).is_empty());

    let sets: SeriesResponse = f.proto(
        "Series",
        &SeriesRequest {
            matchers: vec![format!(r#"{{__profile_type__="{CPU}"}}"#)],
            label_names: vec!["service_name".into(), "__profile_type__".into()],
            start,
            end,
        },
    );
    let sets: Vec<Vec<(String, String)>> = sets
        .labels_set
        .into_iter()
        .map(|l| l.labels.into_iter().map(|p| (p.name, p.value)).collect())
        .collect();
    assert_eq!(
        sets,
        [
            vec![
                ("__profile_type__".to_owned(), CPU.to_owned()),
                ("service_name".to_owned(), "api".to_owned())
            ],
            vec![
                ("__profile_type__".to_owned(), CPU.to_owned()),
                ("service_name".to_owned(), "web".to_owned())
            ],
        ]
    );

    // The flame graph's total is the pushed sum; the levels decode to the pushed stacks.
    let flame: SelectMergeStacktracesResponse = f.proto(
        "SelectMergeStacktraces",
        &f.select(r#"{service_name="api"}"#, ProfileFormat::Flamegraph),
    );
    let graph = flame.flamegraph.expect("a flame graph");
    assert_eq!(graph.total, API_TOTAL);
    assert_eq!(graph.max_self, 80_000_000);
    let levels = decode_levels(&graph);
    assert_eq!(levels[0], [(0, API_TOTAL, 0, "total".to_owned())]);
    assert_eq!(levels[1], [(0, API_TOTAL, 0, "main".to_owned())]);
    assert_eq!(
        levels[2],
        [
            (0, 30_000_000, 30_000_000, "cold".to_owned()),
            (30_000_000, 80_000_000, 80_000_000, "hot".to_owned())
        ]
    );
    let all: SelectMergeStacktracesResponse = f.proto(
        "SelectMergeStacktraces",
        &f.select("{}", ProfileFormat::Unspecified),
    );
    assert_eq!(all.flamegraph.expect("graph").total, API_TOTAL + WEB_TOTAL);

    let tree: SelectMergeStacktracesResponse = f.proto(
        "SelectMergeStacktraces",
        &f.select(r#"{service_name="web"}"#, ProfileFormat::Tree),
    );
    assert_eq!(
        tree.tree.as_ref(),
        b"\x00\x00\x01\x04main\x00\x01\x03web\x80\xe1\xeb\x17\x00",
        "virtual root, main, web (self 50 ms)"
    );

    let pprof: SelectMergeStacktracesResponse = f.proto(
        "SelectMergeStacktraces",
        &f.select(r#"{service_name="api"}"#, ProfileFormat::Pprof),
    );
    let pprof = pprof.pprof.and_then(|p| p.profile).expect("a pprof");
    assert_eq!(pprof_total(&pprof), API_TOTAL);

    let mut call_site = f.select(r#"{service_name="api"}"#, ProfileFormat::Flamegraph);
    call_site.stack_trace_selector = Some(firn_node::api::types::StackTraceSelector {
        call_site: vec![
            firn_node::api::types::Location {
                name: "main".into(),
            },
            firn_node::api::types::Location { name: "hot".into() },
        ],
        go_pgo: None,
    });
    let hot: SelectMergeStacktracesResponse = f.proto("SelectMergeStacktraces", &call_site);
    assert_eq!(hot.flamegraph.expect("graph").total, 80_000_000);

    let merged: google::Profile = f.proto(
        "SelectMergeProfile",
        &SelectMergeProfileRequest {
            profile_type_id: SAMPLES.into(),
            label_selector: r#"{service_name="api"}"#.into(),
            start,
            end,
            ..Default::default()
        },
    );
    assert_eq!(pprof_total(&merged), 11, "samples:count of api");
    let functions: Vec<&str> = merged
        .function
        .iter()
        .map(|f| merged.string_table[f.name as usize].as_str())
        .collect();
    assert_eq!(functions.len(), 3);
    for name in ["main", "hot", "cold"] {
        assert!(functions.contains(&name), "{functions:?}");
    }

    // One step over the hour: a point per service, summing (or averaging) its profiles.
    let select_series = |aggregation: i32| -> Vec<(String, f64, usize)> {
        let r: SelectSeriesResponse = f.proto(
            "SelectSeries",
            &SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                start,
                end,
                group_by: vec!["service_name".into()],
                step: 3_700.0,
                aggregation: Some(aggregation),
                ..Default::default()
            },
        );
        r.series
            .iter()
            .map(|s| {
                assert_eq!(s.labels[0].name, "service_name");
                (
                    s.labels[0].value.clone(),
                    s.points.iter().map(|p| p.value).sum(),
                    s.points.len(),
                )
            })
            .collect()
    };
    assert_eq!(
        select_series(0),
        [
            ("api".to_owned(), API_TOTAL as f64, 1),
            ("web".to_owned(), WEB_TOTAL as f64, 1)
        ]
    );
    assert_eq!(
        select_series(1),
        [
            ("api".to_owned(), API_TOTAL as f64 / 2.0, 1),
            ("web".to_owned(), WEB_TOTAL as f64, 1)
        ],
        "average per profile"
    );
    let fine: SelectSeriesResponse = f.proto(
        "SelectSeries",
        &SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: r#"{service_name="api"}"#.into(),
            start,
            end,
            step: 1.0,
            ..Default::default()
        },
    );
    let points = &fine.series[0].points;
    assert_eq!(points.len(), 2, "one point per profile at a 1 s step");
    assert_eq!(
        points.iter().map(|p| p.value).sum::<f64>(),
        API_TOTAL as f64
    );
    assert!(points.iter().all(|p| (start..=end).contains(&p.timestamp)));

    let diff: DiffResponse = f.proto(
        "Diff",
        &DiffRequest {
            left: Some(f.select(r#"{service_name="api"}"#, ProfileFormat::Unspecified)),
            right: Some(f.select(r#"{service_name="web"}"#, ProfileFormat::Unspecified)),
        },
    );
    let diff = diff.flamegraph.expect("a diff");
    assert_eq!(
        (diff.left_ticks, diff.right_ticks, diff.total),
        (API_TOTAL, WEB_TOTAL, API_TOTAL + WEB_TOTAL)
    );
    assert_eq!(
        &diff.levels[0].values[..],
        [0, API_TOTAL, 0, 0, WEB_TOTAL, 0, 0]
    );

    // Another tenant sees none of it.
    let other: SelectMergeStacktracesResponse = f
        .server
        .connect_proto(
            &format!("{Q}/SelectMergeStacktraces"),
            &f.select("{}", ProfileFormat::Flamegraph),
            "someone-else",
        )
        .expect("other tenant");
    assert_eq!(other.flamegraph.expect("graph").total, 0);
}

#[test]
fn every_rpc_over_connect_json_speaks_protojson() {
    let f = fixture();
    let (start, end) = (f.start.to_string(), f.end.to_string());

    let types = f.json("ProfileTypes", json!({ "start": start, "end": end }));
    assert_eq!(types["profileTypes"][0]["ID"], CPU);
    assert_eq!(types["profileTypes"][0]["sampleType"], "cpu");

    let names = f.json(
        "LabelNames",
        json!({ "matchers": ["{}"], "start": start, "end": end }),
    );
    assert!(
        names["names"]
            .as_array()
            .expect("names")
            .contains(&json!("region"))
    );

    // Numbers accepted for int64 fields, as protojson allows.
    let values = f.json(
        "LabelValues",
        json!({ "name": "region", "start": f.start, "end": f.end }),
    );
    assert_eq!(values["names"], json!(["eu", "us"]));

    let sets = f.json(
        "Series",
        json!({ "matchers": [r#"{service_name="web"}"#], "labelNames": ["region"], "start": start, "end": end }),
    );
    assert_eq!(
        sets["labelsSet"],
        json!([{ "labels": [{ "name": "region", "value": "us" }] }])
    );

    let flame = f.json(
        "SelectMergeStacktraces",
        json!({
            "profileTypeID": CPU,
            "labelSelector": r#"{service_name="api"}"#,
            "start": start,
            "end": end,
            "maxNodes": "16",
            "format": "PROFILE_FORMAT_FLAMEGRAPH",
        }),
    );
    assert_eq!(
        flame["flamegraph"]["total"],
        API_TOTAL.to_string(),
        "int64 as a string"
    );
    assert_eq!(flame["flamegraph"]["maxSelf"], "80000000");
    assert_eq!(flame["flamegraph"]["names"][0], "total");
    assert_eq!(
        flame["flamegraph"]["levels"][0]["values"],
        json!(["0", API_TOTAL.to_string(), "0", "0"])
    );

    // Original proto names and enum numbers are accepted too.
    let pprof = f.json(
        "SelectMergeStacktraces",
        json!({
            "profile_typeID": CPU,
            "label_selector": r#"{service_name="web"}"#,
            "start": start,
            "end": end,
            "format": 4,
        }),
    );
    let samples = pprof["pprof"]["profile"]["sample"]
        .as_array()
        .expect("samples");
    assert_eq!(samples[0]["value"], json!([WEB_TOTAL.to_string()]));

    let merged = f.json(
        "SelectMergeProfile",
        json!({ "profileTypeID": CPU, "labelSelector": "{}", "start": start, "end": end }),
    );
    let total: i64 = merged["sample"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            s["value"][0]
                .as_str()
                .expect("string")
                .parse::<i64>()
                .expect("int")
        })
        .sum();
    assert_eq!(total, API_TOTAL + WEB_TOTAL);
    assert_eq!(merged["stringTable"][0], "");

    let series = f.json(
        "SelectSeries",
        json!({
            "profileTypeID": CPU,
            "labelSelector": "{}",
            "start": start,
            "end": end,
            "step": 3700,
            "groupBy": ["region"],
            "aggregation": "TIME_SERIES_AGGREGATION_TYPE_SUM",
            "limit": "1",
        }),
    );
    let only = &series["series"];
    assert_eq!(
        only.as_array().expect("series").len(),
        1,
        "limit keeps the largest"
    );
    assert_eq!(
        only[0]["labels"],
        json!([{ "name": "region", "value": "eu" }])
    );
    assert_eq!(only[0]["points"][0]["value"], json!(API_TOTAL as f64));
    assert!(only[0]["points"][0]["timestamp"].is_string());

    // Responses are gzipped for clients that accept it.
    let r = ureq::post(&format!("{}/{Q}/SelectMergeProfile", f.server.url))
        .set("Content-Type", "application/json")
        .set("Accept-Encoding", "gzip")
        .set("X-Scope-OrgID", TENANT)
        .send_string(&json!({ "profileTypeID": CPU, "start": start, "end": end }).to_string())
        .expect("200");
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(r.into_reader()),
        &mut text,
    )
    .expect("a gzip body");
    let unzipped: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(unzipped, merged, "the same profile, compressed");

    let left = json!({ "profileTypeID": CPU, "labelSelector": r#"{region="eu"}"#, "start": start, "end": end });
    let diff = f.json("Diff", json!({ "left": left, "right": left }));
    assert_eq!(diff["flamegraph"]["leftTicks"], API_TOTAL.to_string());
    assert_eq!(diff["flamegraph"]["rightTicks"], API_TOTAL.to_string());
}

#[test]
fn bad_input_is_a_4xx_naming_the_field() {
    let f = fixture();
    let (start, end) = (f.start, f.end);
    let select = |extra: Value| {
        let mut body =
            json!({ "profileTypeID": CPU, "labelSelector": "{}", "start": start, "end": end });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "ProfileTypes",
            json!({ "start": -5 }),
            400,
            "invalid_argument",
            "start is -5 ms",
        ),
        (
            "ProfileTypes",
            json!({ "start": "x" }),
            400,
            "invalid_argument",
            "ProfileTypesRequest.start",
        ),
        (
            "LabelNames",
            json!({ "matchers": ["{a=}"] }),
            400,
            "invalid_argument",
            "matchers[0]: selector",
        ),
        (
            "LabelNames",
            json!({ "start": end, "end": start }),
            400,
            "invalid_argument",
            "is after end",
        ),
        (
            "LabelValues",
            json!({ "name": "" }),
            400,
            "invalid_argument",
            "name is required",
        ),
        (
            "LabelValues",
            json!({ "name": "a b" }),
            400,
            "invalid_argument",
            "name \"a b\" is not a valid label name",
        ),
        (
            "Series",
            json!({ "labelNames": ["ok", "not ok"] }),
            400,
            "invalid_argument",
            "label_names[1]",
        ),
        (
            "Series",
            json!({ "matchers": vec!["{}"; 33] }),
            400,
            "invalid_argument",
            "the limit is 32",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "profileTypeID": "" })),
            400,
            "invalid_argument",
            "profile_typeID is required",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "profileTypeID": "cpu" })),
            400,
            "invalid_argument",
            "profile_typeID: ",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "labelSelector": "{service_name=~\"(\"}" })),
            400,
            "invalid_argument",
            "label_selector: ",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "start": end, "end": start })),
            400,
            "invalid_argument",
            "is after end",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "end": "99999999999999999" })),
            400,
            "invalid_argument",
            "end is 99999999999999999 ms",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "maxNodes": "99999999" })),
            400,
            "invalid_argument",
            "max_nodes is 99999999",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "format": "PROFILE_FORMAT_NOPE" })),
            400,
            "invalid_argument",
            "SelectMergeStacktracesRequest.format",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "format": 9 })),
            400,
            "invalid_argument",
            "format 9",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "format": "PROFILE_FORMAT_DOT" })),
            501,
            "unimplemented",
            "PROFILE_FORMAT_DOT",
        ),
        (
            "SelectMergeStacktraces",
            select(json!({ "spanSelector": ["not-a-span"] })),
            400,
            "invalid_argument",
            "span_selector: \"not-a-span\" is not 16 hex digits",
        ),
        (
            "SelectMergeProfile",
            select(json!({ "labelSelector": "{a=\"b\"" })),
            400,
            "invalid_argument",
            "label_selector: ",
        ),
        (
            "SelectSeries",
            select(json!({ "step": 0 })),
            400,
            "invalid_argument",
            "step is 0 s",
        ),
        (
            "SelectSeries",
            select(json!({ "step": 0.01 })),
            400,
            "invalid_argument",
            "the limit is 11000",
        ),
        (
            "SelectSeries",
            select(json!({ "step": 60, "aggregation": 7 })),
            400,
            "invalid_argument",
            "aggregation",
        ),
        (
            "SelectSeries",
            select(json!({ "step": 60, "groupBy": ["a-b"] })),
            400,
            "invalid_argument",
            "group_by[0]",
        ),
        (
            "SelectSeries",
            select(json!({ "step": 60, "limit": -1 })),
            400,
            "invalid_argument",
            "limit is -1",
        ),
        (
            "Diff",
            json!({ "left": select(json!({})) }),
            400,
            "invalid_argument",
            "right is required",
        ),
        (
            "Diff",
            json!({ "left": select(json!({})), "right": select(json!({ "profileTypeID": SAMPLES })) }),
            400,
            "invalid_argument",
            "differ",
        ),
        (
            "Diff",
            json!({ "left": select(json!({})), "right": select(json!({ "start": end, "end": start })) }),
            400,
            "invalid_argument",
            "right.start",
        ),
    ];
    for (method, body, status, code, needle) in cases {
        let (got, answer) = f
            .server
            .connect_json(&format!("{Q}/{method}"), &body, TENANT);
        assert_eq!(got, status, "{method} {body}: {answer}");
        assert_eq!(answer["code"], code, "{method} {body}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{method} {body}: {message}");
    }

    // Transport-level mistakes.
    let url = format!("{}/{Q}/SelectMergeStacktraces", f.server.url);
    let post = |content_type: &str, encoding: Option<&str>, body: &[u8]| {
        let mut request = ureq::post(&url).set("Content-Type", content_type);
        if let Some(e) = encoding {
            request = request.set("Content-Encoding", e);
        }
        match request.send_bytes(body) {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{e}"),
        }
    };
    let (status, body) = post("application/proto", None, b"\xff\xff\xff");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not valid protobuf"), "{body}");
    let (status, body) = post("text/plain", None, b"{}");
    assert_eq!(status, 415, "{body}");
    let (status, body) = post("application/json", Some("br"), b"{}");
    assert_eq!(status, 501, "{body}");
    assert!(
        body.contains("unimplemented") && body.contains("compression"),
        "{body}"
    );
    let (status, body) = post("application/json", Some("gzip"), b"not gzip");
    assert_eq!(status, 400, "{body}");
    let (status, body) = post("application/json", None, b"{\"start\": ");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    let (status, body) = post("application/json", None, b"[1, 2]");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("must be a JSON object"), "{body}");

    // Still serving, nothing changed.
    let flame: SelectMergeStacktracesResponse = f.proto(
        "SelectMergeStacktraces",
        &f.select("{}", ProfileFormat::Flamegraph),
    );
    assert_eq!(
        flame.flamegraph.expect("graph").total,
        API_TOTAL + WEB_TOTAL
    );
    let e = f.proto_err(
        "SelectMergeStacktraces",
        &SelectMergeStacktracesRequest {
            max_nodes: Some(-1),
            ..f.select("{}", ProfileFormat::Flamegraph)
        },
    );
    assert_eq!(e.status, 400, "{}", e.body);
    assert!(e.body.contains("max_nodes is -1"), "{}", e.body);
}

#[test]
fn every_message_is_bounded_by_the_request_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &["--max-request-bytes", "100000"]);
    let url = format!("{}/{Q}/LabelNames", server.url);
    let send = |content_type: &str, gzipped: bool, body: Vec<u8>| {
        let mut request = ureq::post(&url).set("Content-Type", content_type);
        if gzipped {
            request = request.set("Content-Encoding", "gzip");
        }
        match request.send_bytes(&body) {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{e}"),
        }
    };
    // A matcher list that is small gzipped and large decompressed (a gzip bomb).
    let big = serde_json::to_vec(&json!({ "matchers": [" ".repeat(200_000)] })).expect("json");
    let (status, body) = send("application/json", true, gzip(&big));
    assert_eq!(status, 413, "{body}");
    assert!(
        body.contains("resource_exhausted") && body.contains("the limit is 100000 bytes"),
        "{body}"
    );
    // Too large as sent: refused from its Content-Length. The node may answer 413 and close
    // before the client has written the whole body, which the client sees as a broken pipe.
    let early = ureq::post(&url)
        .set("Content-Type", "application/json")
        .send_bytes(&big);
    match early {
        Err(ureq::Error::Status(status, r)) => {
            assert_eq!(status, 413, "{}", r.into_string().unwrap_or_default())
        }
        Err(ureq::Error::Transport(t)) => assert!(
            t.to_string().contains("Broken pipe") || t.to_string().contains("reset"),
            "{t}"
        ),
        Ok(r) => panic!("accepted with {}", r.status()),
    }
    // A gRPC-Web frame that claims more than the limit.
    let (status, body) = send(
        "application/grpc-web+proto",
        false,
        vec![0, 0x10, 0, 0, 0, 1, 2, 3],
    );
    assert_eq!(
        status, 200,
        "gRPC answers 200 and puts the status in trailers"
    );
    assert!(
        body.contains("grpc-status: 8"),
        "resource_exhausted: {body:?}"
    );
    assert!(body.contains("the limit is 100000 bytes"), "{body:?}");
}

#[test]
fn grpc_web_frames_messages_and_trailers() {
    let f = fixture();
    let request = prost::Message::encode_to_vec(
        &f.select(r#"{service_name="web"}"#, ProfileFormat::Flamegraph),
    );
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(request.len() as u32).to_be_bytes());
    framed.extend_from_slice(&request);
    let call = |body: &[u8]| {
        let r = ureq::post(&format!("{}/{Q}/SelectMergeStacktraces", f.server.url))
            .set("Content-Type", "application/grpc-web+proto")
            .set("X-Scope-OrgID", TENANT)
            .send_bytes(body)
            .expect("gRPC-Web answers 200");
        assert_eq!(r.content_type(), "application/grpc-web+proto");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).expect("body");
        bytes
    };
    let bytes = call(&framed);
    assert_eq!(bytes[0], 0, "a message frame first");
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    let response: SelectMergeStacktracesResponse =
        prost::Message::decode(&bytes[5..5 + len]).expect("response message");
    assert_eq!(response.flamegraph.expect("graph").total, WEB_TOTAL);
    let trailers = &bytes[5 + len..];
    assert_eq!(trailers[0], 0x80, "then the trailers frame");
    assert_eq!(&trailers[5..], b"grpc-status: 0\r\n");

    // An error is a trailers-only answer with the code and the percent-encoded message.
    let bad = prost::Message::encode_to_vec(&SelectMergeStacktracesRequest {
        label_selector: "{é=\"x\"}".into(),
        ..f.select("{}", ProfileFormat::Flamegraph)
    });
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(bad.len() as u32).to_be_bytes());
    framed.extend_from_slice(&bad);
    // A gzip-compressed request message (flag 1, grpc-encoding: gzip) reads the same.
    let compressed = gzip(&request);
    let mut gz_framed = vec![1u8];
    gz_framed.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    gz_framed.extend_from_slice(&compressed);
    let r = ureq::post(&format!("{}/{Q}/SelectMergeStacktraces", f.server.url))
        .set("Content-Type", "application/grpc-web+proto")
        .set("grpc-encoding", "gzip")
        .set("X-Scope-OrgID", TENANT)
        .send_bytes(&gz_framed)
        .expect("200");
    let mut gz_answer = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut gz_answer).expect("body");
    assert_eq!(
        gz_answer, bytes,
        "compressed and plain requests get the same answer"
    );

    let bytes = call(&framed);
    assert_eq!(bytes[0], 0x80, "{bytes:?}");
    let text = String::from_utf8_lossy(&bytes[5..]);
    assert!(text.starts_with("grpc-status: 3\r\n"), "{text}");
    assert!(
        text.contains("grpc-message: label_selector: selector \"{%C3%A9"),
        "{text}"
    );
}
