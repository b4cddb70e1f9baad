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
    }
}

#[test]
fn sums_round_trip_and_bad_bytes_are_refused() {
    let sums = TenantSums {
        series: vec![
            series("p0", &[0, 3, 70_000], &[5, -2, i64::MAX]),
            series("p1", &[1], &[9]),
        ],
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
