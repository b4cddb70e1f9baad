use firn_storage::pprof::{DecodeLimits, decode};

use super::*;
use crate::api::otlp::messages::{
    Function, KeyValueAndUnit, Line, Link, Location, Resource, ResourceProfiles, Sample,
    ScopeProfiles, Stack,
};

/// A dictionary with `main → work` (leaf first in the stack), a thread attribute and a link.
fn dictionary() -> ProfilesDictionary {
    let strings = [
        "",
        "samples",
        "count",
        "cpu",
        "nanoseconds",
        "main",
        "work",
        "thread",
        "t1",
    ];
    ProfilesDictionary {
        string_table: strings.iter().map(|s| (*s).to_owned()).collect(),
        function_table: vec![
            Function::default(),
            Function {
                name_strindex: 5,
                ..Default::default()
            },
            Function {
                name_strindex: 6,
                ..Default::default()
            },
        ],
        location_table: vec![
            Location::default(),
            Location {
                lines: vec![Line {
                    function_index: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
            Location {
                lines: vec![Line {
                    function_index: 2,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        stack_table: vec![
            Stack::default(),
            Stack {
                location_indices: vec![2, 1],
            },
        ],
        attribute_table: vec![
            KeyValueAndUnit::default(),
            KeyValueAndUnit {
                key_strindex: 7,
                value: Some(AnyValue {
                    string_value: Some("t1".into()),
                    ..Default::default()
                }),
                unit_strindex: 0,
            },
        ],
        link_table: vec![
            Link::default(),
            Link {
                trace_id: vec![0xab; 16].into(),
                span_id: vec![0xcd; 8].into(),
            },
        ],
        ..Default::default()
    }
}

fn string_attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            string_value: Some(value.into()),
            ..Default::default()
        }),
        key_strindex: 0,
    }
}

/// One profile of `samples:count` every 10 ms of CPU, two samples on one stack.
fn request(profile_id: Vec<u8>, resource: Vec<KeyValue>) -> ExportProfilesServiceRequest {
    ExportProfilesServiceRequest {
        dictionary: Some(dictionary()),
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: resource,
                dropped_attributes_count: 0,
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    sample_type: Some(ValueType {
                        type_strindex: 1,
                        unit_strindex: 2,
                    }),
                    period_type: Some(ValueType {
                        type_strindex: 3,
                        unit_strindex: 4,
                    }),
                    period: 10_000_000,
                    profile_id: profile_id.into(),
                    samples: vec![
                        Sample {
                            stack_index: 1,
                            attribute_indices: vec![1],
                            link_index: 1,
                            values: vec![3],
                            ..Default::default()
                        },
                        Sample {
                            stack_index: 1,
                            timestamps_unix_nano: vec![1, 2],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn pprof(series: &RawSeries) -> firn_storage::pprof::Profile {
    decode(&series.samples[0], DecodeLimits::default())
        .expect("the converted pprof decodes")
        .into_profile()
}

#[test]
fn an_ebpf_style_profile_becomes_cpu_time_with_labels_and_links() {
    let series = to_series(
        request(
            vec![0x11; 16],
            vec![
                string_attr("service.name", "api"),
                string_attr("k8s.pod.name", "api-0"),
            ],
        ),
        Nanos(5),
    )
    .expect("valid");
    assert_eq!(series.len(), 1);
    let mut labels = series[0].labels.clone();
    labels.sort();
    assert_eq!(
        labels,
        [
            ("__name__".to_owned(), "process_cpu".to_owned()),
            ("k8s_pod_name".to_owned(), "api-0".to_owned()),
            ("service_name".to_owned(), "api".to_owned()),
        ]
    );
    let p = pprof(&series[0]);
    let s = |i: i64| p.string_table[i as usize].as_str();
    assert_eq!(
        (s(p.sample_type[0].r#type), s(p.sample_type[0].unit)),
        ("cpu", "nanoseconds"),
        "samples:count every cpu:nanoseconds period is CPU time"
    );
    assert_eq!(p.time_nanos, 5, "no time: the receive time");
    assert_eq!(p.duration_nanos, 10_000_000_000, "no duration: 10 s");
    // 3 values, then 2 timestamps of one each; times the 10 ms period.
    let values: Vec<i64> = p.sample.iter().map(|x| x.value[0]).collect();
    assert_eq!(values, [30_000_000, 20_000_000]);
    let leaf = p.sample[0].location_id[0];
    let location = p.location.iter().find(|l| l.id == leaf).expect("leaf");
    let function = p
        .function
        .iter()
        .find(|f| f.id == location.line[0].function_id)
        .expect("function");
    assert_eq!(s(function.name), "work", "stacks stay leaf first");
    let labels: Vec<(&str, &str)> = p.sample[0]
        .label
        .iter()
        .map(|l| (s(l.key), s(l.str)))
        .collect();
    assert_eq!(
        labels,
        [
            ("thread", "t1"),
            ("trace_id", "abababababababababababababababab"),
            ("span_id", "cdcdcdcdcdcdcdcd"),
            ("profile_id", "11111111111111111111111111111111"),
        ]
    );
}

#[test]
fn the_service_falls_back_to_the_executable() {
    let series = to_series(
        request(
            Vec::new(),
            vec![string_attr("process.executable.name", "worker")],
        ),
        Nanos(5),
    )
    .expect("valid");
    assert!(
        series[0]
            .labels
            .contains(&("service_name".into(), "unknown_service:worker".into())),
        "{:?}",
        series[0].labels
    );
}

/// Makes a valid request invalid.
type Spoil = fn(&mut ExportProfilesServiceRequest);

#[test]
fn malformed_dictionaries_and_indices_are_named() {
    let cases: [(&str, Spoil); 6] = [
        ("dictionary.string_table[0] is not the zero value", |r| {
            r.dictionary.as_mut().expect("d").string_table[0] = "x".into();
        }),
        ("dictionary.function_table[0] is not the zero value", |r| {
            r.dictionary.as_mut().expect("d").function_table[0].name_strindex = 5;
        }),
        (
            "dictionary.location_table[1].lines[0].function_index is 9",
            |r| {
                r.dictionary.as_mut().expect("d").location_table[1].lines[0].function_index = 9;
            },
        ),
        ("dictionary.stack_table[1].location_indices[0] is 0", |r| {
            r.dictionary.as_mut().expect("d").stack_table[1].location_indices[0] = 0;
        }),
        ("dictionary.link_table[1] has a 3-byte trace_id", |r| {
            r.dictionary.as_mut().expect("d").link_table[1].trace_id = vec![1, 2, 3].into();
        }),
        ("profiles[0].samples[1].stack_index is -1", |r| {
            r.resource_profiles[0].scope_profiles[0].profiles[0].samples[1].stack_index = -1;
        }),
    ];
    for (needle, spoil) in cases {
        let mut r = request(Vec::new(), Vec::new());
        spoil(&mut r);
        let e = to_series(r, Nanos(5)).expect_err(needle);
        assert!(e.to_string().contains(needle), "{needle}: {e}");
    }
    let mut r = request(Vec::new(), Vec::new());
    r.resource_profiles[0].scope_profiles[0].profiles[0].sample_type = None;
    let e = to_series(r, Nanos(5)).expect_err("no sample type");
    assert!(e.to_string().contains("sample_type is required"), "{e}");
}

#[test]
fn a_scope_with_cpu_time_keeps_its_sample_counts() {
    let mut r = request(Vec::new(), Vec::new());
    let scope = &mut r.resource_profiles[0].scope_profiles[0];
    let mut cpu = scope.profiles[0].clone();
    cpu.sample_type = Some(ValueType {
        type_strindex: 3,
        unit_strindex: 4,
    });
    scope.profiles.push(cpu);
    let series = to_series(r, Nanos(5)).expect("valid");
    let types: Vec<(String, i64)> = series
        .iter()
        .map(|s| {
            let p = pprof(s);
            let t = &p.sample_type[0];
            (
                format!(
                    "{}:{}",
                    p.string_table[t.r#type as usize], p.string_table[t.unit as usize]
                ),
                p.sample[0].value[0],
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("samples:count".to_owned(), 3),
            ("cpu:nanoseconds".to_owned(), 3)
        ],
        "a pprof-converted pair: counts stay counts, nothing doubles"
    );
}

#[test]
fn stacks_and_their_expansion_are_bounded() {
    let mut r = request(Vec::new(), Vec::new());
    let d = r.dictionary.as_mut().expect("d");
    d.stack_table[1].location_indices = vec![1; 5000];
    let e = to_series(r, Nanos(5)).expect_err("too deep");
    assert!(
        e.to_string()
            .contains("has 5000 locations, the limit is 4096"),
        "{e}"
    );

    let mut r = request(Vec::new(), Vec::new());
    r.dictionary.as_mut().expect("d").stack_table[1].location_indices = vec![1; 4000];
    let samples = &mut r.resource_profiles[0].scope_profiles[0].profiles[0].samples;
    let one = samples[0].clone();
    samples.resize(MAX_FRAMES / 4000 + 1, one);
    let e = to_series(r, Nanos(5)).expect_err("too many frames");
    assert!(e.to_string().contains("stack frames in all"), "{e}");
}
