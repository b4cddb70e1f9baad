use std::collections::BTreeMap;

use super::*;
use crate::filter::{LabelMatcher, MatchOp};
use crate::ids::{Nanos, SeqNo, TenantId};
use crate::testing::{ProfileBuilder, memory_store, pprof_write};
use crate::{Store, StoreConfig};

fn series(pod: &str, ordinals: &[u32], values: &[i64]) -> SeriesSums {
    SeriesSums {
        profile_type: "cpu".into(),
        delta: true,
        labels: BTreeMap::from([
            ("pod".to_owned(), pod.to_owned()),
            ("service_name".to_owned(), "svc".to_owned()),
        ]),
        ordinals: ordinals.to_vec(),
        values: values.to_vec(),
        slice_ends: Vec::new(),
    }
}

#[test]
fn sums_round_trip_and_bad_bytes_are_refused() {
    let sums = TenantSums {
        series: vec![
            series("p0", &[0, 3, 70_000], &[5, -2, i64::MAX]),
            series("p1", &[1], &[9]),
        ],
        ..Default::default()
    };
    let bytes = encode_sums(&sums);
    assert_eq!(bytes, encode_sums(&sums), "deterministic");
    assert_eq!(decode_sums(&bytes, 1 << 20).expect("decodes"), sums);
    assert!(decode_sums(b"FSYM2abc", 1 << 20).is_err());
    assert!(decode_sums(&bytes[..bytes.len() - 3], 1 << 20).is_err());
    let err = decode_sums(&bytes, 8).expect_err("past the decompression limit");
    assert!(err.contains("zstd"), "{err}");
}

#[test]
fn sliced_sums_round_trip_and_give_each_slice_its_entries() {
    let mut a = series("p0", &[2, 5, 0, 5, 9], &[1, 2, 3, 4, 5]);
    a.slice_ends = vec![2, 2, 5];
    let mut b = series("p1", &[7], &[8]);
    b.slice_ends = vec![0, 1, 1];
    let sums = TenantSums {
        series: vec![a, b],
        slice_nanos: 300_000_000_000,
        first_slice: -4,
    };
    let bytes = encode_sums(&sums);
    let back = decode_sums(&bytes, 1 << 20).expect("decodes");
    assert_eq!(back, sums);
    let a = &back.series[0];
    assert_eq!(a.entries(0..1), (&[2, 5][..], &[1, 2][..]));
    assert_eq!(a.entries(1..2), (&[][..], &[][..]));
    assert_eq!(a.entries(1..3), (&[0, 5, 9][..], &[3, 4, 5][..]));
    assert_eq!(a.entries(0..3).0.len(), 5);
    assert_eq!(back.series[1].entries(1..3), (&[7][..], &[8][..]));
    assert_eq!(back.series[1].entries(2..3), (&[][..], &[][..]));
    // Unsliced sums are one slice.
    let one = series("p0", &[1, 2], &[3, 4]);
    assert_eq!(one.entries(0..1).0, &[1, 2]);
}

/// Rows of one series every 30 s over an hour: stacks 0 to 2 in every row, and stack 10 + the
/// row's 5-minute slice in that slice's rows only.
fn hour_of_rows() -> SumsBuilder {
    let mut b = SumsBuilder::default();
    for i in 0..120i64 {
        let time = Nanos(3_600_000_000_000 + i * 30_000_000_000);
        let sums = b.series("cpu", true, vec![("pod".into(), "p0".into())], time);
        for o in 0..3u32 {
            *sums.entry(o).or_default() += 1;
        }
        *sums.entry(10 + (i / 10) as u32).or_default() += 100;
        b.add_rows(4 * 10);
    }
    b
}

#[test]
fn the_builder_slices_at_the_finest_width_cheap_enough() {
    // Whole: 3 + 12 entries. Five minutes: 12 slices of 4 (48, 3.2x): sliced there.
    let sums = hour_of_rows().finish().expect("sums");
    assert_eq!(sums.slice_nanos, 300_000_000_000);
    assert_eq!(sums.first_slice, 12, "the hour starts at 3,600 s");
    let s = &sums.series[0];
    assert_eq!(s.slice_ends.len(), 12);
    for k in 0..12 {
        let (ordinals, values) = s.entries(k..k + 1);
        assert_eq!(ordinals, &[0, 1, 2, 10 + k as u32]);
        assert_eq!(values, &[10, 10, 10, 1000]);
    }
    let total: i64 = s.entries(0..12).1.iter().sum();
    assert_eq!(total, 120 * 3 + 120 * 100);
    assert_eq!(
        decode_sums(&encode_sums(&sums), 1 << 20).expect("decodes"),
        sums
    );

    // Fewer rows a slice: the same entries break MIN_ROWS_PER_SUM sliced at 5 minutes (48
    // entries against 120 / 4 = 30 rows), not at 10 (6 slices of 5 entries).
    let mut b = SumsBuilder::default();
    for i in 0..120i64 {
        let time = Nanos(3_600_000_000_000 + i * 30_000_000_000);
        let sums = b.series("cpu", true, vec![], time);
        for o in 0..3u32 {
            *sums.entry(o).or_default() += 1;
        }
        *sums.entry(10 + (i / 10) as u32).or_default() += 100;
        b.add_rows(1);
    }
    let sums = b.finish().expect("15 entries, 120 rows");
    assert_eq!(sums.slice_nanos, 600_000_000_000);
    assert_eq!(sums.series[0].slice_ends, vec![5, 10, 15, 20, 25, 30]);

    // Rows within five minutes: not sliced.
    let mut b = SumsBuilder::default();
    for i in 0..10i64 {
        let sums = b.series("cpu", true, vec![], Nanos(i * 1_000_000_000));
        *sums.entry(0).or_default() += 1;
        b.add_rows(10);
    }
    let sums = b.finish().expect("sums");
    assert_eq!((sums.slice_nanos, sums.first_slice), (0, 0));
    assert!(sums.series[0].slice_ends.is_empty());
}

#[test]
fn a_series_passes_only_when_every_part_of_the_filter_holds_for_it() {
    let s = series("p0", &[0], &[1]);
    let matcher = |name: &str, op, value: &str| LabelMatcher::new(name, op, value).expect("m");
    let mut f = ScanFilter::default();
    assert!(s.passes(&f));
    f.labels = vec![matcher("pod", MatchOp::Eq, "p0")];
    assert!(s.passes(&f));
    f.labels = vec![matcher("pod", MatchOp::Eq, "p1")];
    assert!(!s.passes(&f));
    // A label the series lacks matches as "".
    f.labels = vec![matcher("region", MatchOp::Eq, "")];
    assert!(s.passes(&f));
    f.labels = vec![matcher("region", MatchOp::Eq, "eu")];
    assert!(!s.passes(&f));
    f.labels.clear();
    f.delta = Some(false);
    assert!(!s.passes(&f));
    f.delta = Some(true);
    f.profile_types = Some(["memory".to_owned()].into());
    assert!(!s.passes(&f));
}

/// `profiles` CPU profiles a pod, for two pods, each with the same three stacks; one flush.
async fn flushed(profiles: i64) -> Store {
    let store = memory_store(StoreConfig::default()).await;
    let mut seq = 0;
    for i in 0..profiles {
        for pod in ["p0", "p1"] {
            seq += 1;
            let mut p = ProfileBuilder::cpu().time(Nanos(i * 10_000_000_000));
            p.sample(&["main", "work"], &[1, 10 + i], &[]);
            p.sample(&["main", "idle"], &[1, 100], &[]);
            p.sample(&["main", "work", pod], &[1, 7], &[]);
            let write = pprof_write(
                "t",
                &[("service_name", "svc"), ("pod", pod)],
                p.gzip(),
                Nanos(0),
            );
            store.write(SeqNo(seq), write).expect("write");
        }
    }
    store.flush().await.expect("flush").expect("a block");
    store
}

#[tokio::test]
async fn a_block_sums_each_series_by_stack_when_that_is_four_times_smaller() {
    let tenant = TenantId::new("t").expect("tenant");
    let store = flushed(10).await;
    let block = store.manifest().blocks[0].clone();
    let range = block.tenants[&tenant].sums.expect("120 rows, 12 sums");
    assert_eq!(block.sums_bytes, range.len);
    let sums = store.read_sums(&block.id, range).await.expect("sums");
    let symbols = store.read_symbols(&block.id).await.expect("symbols");
    let mut got = BTreeMap::new();
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    assert_eq!(sums.series.len(), 4, "two pods, two sample types");
    for s in sums.series.iter().filter(|s| s.profile_type == cpu) {
        for (&o, &v) in s.ordinals.iter().zip(&s.values) {
            let frames: Vec<&str> = symbols.frame_names(o).collect();
            got.insert((s.labels["pod"].clone(), frames.join(";")), v);
        }
    }
    // Ten profiles a pod: work is 10 + i, idle 100, the pod's own stack 7.
    let work: i64 = (0..10).map(|i| 10 + i).sum();
    let mut want = BTreeMap::new();
    for pod in ["p0", "p1"] {
        want.insert((pod.to_owned(), "work;main".to_owned()), work);
        want.insert((pod.to_owned(), "idle;main".to_owned()), 1000);
        want.insert((pod.to_owned(), format!("{pod};work;main")), 70);
    }
    assert_eq!(got, want);

    // One profile a pod: as many sums as rows, not worth keeping.
    let store = flushed(1).await;
    let block = &store.manifest().blocks[0];
    assert_eq!(block.tenants[&tenant].sums, None);
    assert_eq!(block.sums_bytes, 0);
}
