use proptest::prelude::*;

use super::*;
use crate::testing::{ProfileBuilder, pprof_write};

fn limits() -> NormalizeLimits {
    NormalizeLimits::default()
}

#[test]
fn one_profile_type_per_sample_type_and_series_split_by_string_labels() {
    let mut b = ProfileBuilder::cpu().time(Nanos(1_000));
    b.sample(
        &["main", "work"],
        &[2, 20],
        &[("goroutine", "a"), ("trace_id", "t1")],
    );
    b.sample(&["main", "idle"], &[1, 10], &[("goroutine", "b")]);
    b.sample(&["main", "zero"], &[0, 0], &[]);
    let req = pprof_write(
        "t",
        &[("service_name", "api"), ("__name__", "process_cpu")],
        b.gzip(),
        Nanos(5),
    );
    let n = normalize(req, &limits()).expect("valid");
    // 2 label groups x 2 sample types; the all-zero sample made a group with no rows.
    assert_eq!(n.profiles.len(), 4);
    let types: BTreeSet<String> = n.profiles.iter().map(|p| p.profile_type.id()).collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_owned(),
            "process_cpu:samples:count:cpu:nanoseconds".to_owned()
        ])
    );
    let a = n
        .profiles
        .iter()
        .find(|p| p.labels.get("goroutine") == Some("a"))
        .expect("group a");
    assert_eq!(a.labels.get("service_name"), Some("api"));
    assert_eq!(a.labels.get("trace_id"), None, "links do not split series");
    assert_eq!(a.links.trace_id, Some(vec![Some("t1".to_owned())]));
    assert!(a.delta);
    assert_eq!(a.time, Nanos(1_000));
    assert_eq!(n.sample_count(), 4);
}

use std::collections::BTreeSet;

#[test]
fn missing_service_name_and_time_get_defaults() {
    let mut b = ProfileBuilder::new(&[("inuse_space", "bytes")], ("space", "bytes"), 512 * 1024);
    b.sample(&["main"], &[100], &[]);
    let n = normalize(pprof_write("t", &[], b.gzip(), Nanos(77)), &limits()).expect("valid");
    assert_eq!(
        n.profiles[0].labels.get("service_name"),
        Some("unknown_service")
    );
    assert_eq!(n.profiles[0].time, Nanos(77));
    assert!(!n.profiles[0].delta);
    assert_eq!(
        n.profiles[0].profile_type.id(),
        "memory:inuse_space:bytes:space:bytes"
    );
}

#[test]
fn bad_series_label_is_refused() {
    let mut b = ProfileBuilder::cpu();
    b.sample(&["main"], &[1, 1], &[]);
    let err = normalize(
        pprof_write("t", &[("x y", "1")], b.gzip(), Nanos(0)),
        &limits(),
    )
    .expect_err("bad");
    assert!(
        err.to_string()
            .contains("label name \"x y\" is not a valid label name"),
        "{err}"
    );
    assert!(err.is_client_error());
}

#[test]
fn pprof_label_keys_are_sanitized_and_collisions_exported() {
    let mut b = ProfileBuilder::cpu();
    b.sample(
        &["main"],
        &[1, 1],
        &[("http path", "/x"), ("service_name", "other")],
    );
    let n = normalize(
        pprof_write("t", &[("service_name", "api")], b.gzip(), Nanos(0)),
        &limits(),
    )
    .expect("valid");
    let labels = &n.profiles[0].labels;
    assert_eq!(labels.get("http_path"), Some("/x"));
    assert_eq!(labels.get("service_name"), Some("api"));
    assert_eq!(labels.get("exported_service_name"), Some("other"));
}

#[test]
fn same_stack_same_id_across_writes() {
    let mut a = ProfileBuilder::cpu();
    a.sample(&["x"], &[1, 1], &[])
        .sample(&["main", "work", "hash"], &[1, 1], &[]);
    let mut b = ProfileBuilder::cpu();
    b.sample(&["main", "work", "hash"], &[5, 5], &[]);
    let na = normalize(pprof_write("t", &[], a.gzip(), Nanos(0)), &limits()).expect("valid");
    let nb = normalize(pprof_write("t", &[], b.gzip(), Nanos(0)), &limits()).expect("valid");
    assert_eq!(na.symbols.stacks[1].id, nb.symbols.stacks[0].id);
    assert_ne!(na.symbols.stacks[0].id, nb.symbols.stacks[0].id);
}

#[test]
fn folded_text_is_parsed_root_first() {
    let text = "main;work;hash 12\nmain;idle 3\n\nmain;work;hash 8\nmain;nothing 0\n";
    let (symbols, stacks, values) = parse_folded(text.as_bytes()).expect("valid");
    assert_eq!(stacks.len(), 2);
    assert_eq!(values, vec![20, 3]);
    let leaf = symbols.stacks[0].locations[0];
    let function = symbols.locations[leaf as usize].1.lines[0].function;
    assert_eq!(
        symbols.strings[symbols.functions[function as usize].name as usize],
        "hash"
    );
}

#[test]
fn folded_errors_name_the_line() {
    for (text, needle) in [
        ("a;b 1\nno_value\n", "line 2"),
        ("a;b x\n", "is not an integer"),
        ("a;;b 1\n", "frame 2 is empty"),
        ("a;b -1\n", "negative"),
    ] {
        let err = parse_folded(text.as_bytes()).expect_err(text);
        assert!(err.to_string().contains(needle), "{text:?}: {err}");
    }
    let err = parse_folded(b"a;\xff 1\n").expect_err("utf8");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

proptest! {
    #[test]
    fn folded_parsing_sums_what_it_reads(
        lines in prop::collection::vec((prop::collection::vec("[a-z]{1,6}", 1..6), 0i64..1000), 0..30)
    ) {
        let text: String = lines.iter().map(|(f, v)| format!("{} {v}\n", f.join(";"))).collect();
        let (symbols, stacks, values) = parse_folded(text.as_bytes()).expect("generated text is valid");
        let expected: i64 = lines.iter().map(|(_, v)| v).sum();
        prop_assert_eq!(values.iter().sum::<i64>(), expected);
        prop_assert_eq!(stacks.len(), symbols.stacks.len());
        prop_assert!(values.iter().all(|&v| v > 0));
    }

    #[test]
    fn folded_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_folded(&bytes);
    }
}

#[test]
fn hostile_profiles_are_refused_or_cleaned() {
    // A stack deeper than the limit.
    let deep: Vec<String> = (0..50).map(|i| format!("f{i}")).collect();
    let frames: Vec<&str> = deep.iter().map(String::as_str).collect();
    let mut b = ProfileBuilder::cpu();
    b.sample(&frames, &[1, 1], &[]);
    let limits = NormalizeLimits {
        max_stack_depth: 40,
        ..Default::default()
    };
    let err = normalize(pprof_write("t", &[], b.gzip(), Nanos(0)), &limits).expect_err("deep");
    assert!(
        err.to_string()
            .contains("a stack has 50 frames, the limit is 40"),
        "{err}"
    );

    // A trace id longer than a label value may be.
    let long = "x".repeat(5000);
    let mut b = ProfileBuilder::cpu();
    b.sample(&["main"], &[1, 1], &[("trace_id", long.as_str())]);
    let err = normalize(pprof_write("t", &[], b.gzip(), Nanos(0)), &limits).expect_err("long");
    assert!(err.to_string().contains("the limit is 2048 bytes"), "{err}");

    // An empty string value that is not string 0 is absent, as in Prometheus.
    let mut b = ProfileBuilder::cpu();
    b.sample(&["main"], &[1, 1], &[("pod", "")]);
    let mut p = b.build();
    p.string_table.push(String::new());
    let empty = (p.string_table.len() - 1) as i64;
    p.sample[0].label[0].str = empty;
    let n = normalize(
        pprof_write("t", &[], crate::pprof::encode_gzip(&p), Nanos(i64::MAX)),
        &limits,
    )
    .expect("valid");
    assert_eq!(n.profiles[0].labels.get("pod"), None);
    assert!(
        n.profiles[0].time < Nanos(i64::MAX),
        "the open end of time ranges is never stored"
    );
}

#[test]
fn folded_profile_type_parts_are_cleaned() {
    let pt = ProfileType::parse("a:b:c:d:e").expect("valid");
    let req = WriteRequest {
        tenant: TenantId::new("t").expect("valid"),
        labels: vec![("__name__".into(), "my:app".into())],
        payload: Payload::Folded {
            text: "main 1\n".into(),
            profile_type: pt,
            delta: true,
            duration: Nanos(0),
        },
        received_at: Nanos(0),
    };
    let n = normalize(req, &limits()).expect("valid");
    assert_eq!(n.profiles[0].profile_type.id(), "my_app:b:c:d:e");
}
