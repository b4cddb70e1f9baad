//! A merge over blocks inside its range adds the blocks' stack sums instead of reading their
//! rows, when its selector is decided series by series; the answer is the scan's, exactly.

use std::collections::BTreeMap;

use firn_query::{MergedProfile, ProfileQuery, QueryEngine};
use firn_storage::Nanos;

use crate::fixtures::{CPU, SEC, engine, tenant, write_cpu};

fn q(selector: &str, from: i64, to: i64) -> ProfileQuery {
    ProfileQuery::new(
        &format!("{CPU}{selector}"),
        Nanos(from * SEC),
        Nanos(to * SEC),
    )
    .expect("valid query")
}

/// Each stack's frames and value.
fn by_frames(m: &MergedProfile) -> BTreeMap<String, i64> {
    m.stacks
        .iter()
        .map(|&(stack, v)| {
            (
                m.symbols.frame_names(stack).collect::<Vec<_>>().join(";"),
                v,
            )
        })
        .collect()
}

/// Twenty profiles a second apart for each of pods p1 and p2 of `api` and p1 of `web`, one
/// block; then one more profile in the buffer.
async fn one_summed_block(e: &QueryEngine) {
    let mut seq = 0;
    for i in 1..=20 {
        for (service, pod) in [("api", "p1"), ("api", "p2"), ("web", "p1")] {
            seq += 1;
            let stacks: [(&[&str], i64); 3] = [
                (&["main", "work"], i),
                (&["main", "idle"], 2),
                (&["main", service, pod], 3),
            ];
            let labels = [("service_name", service), ("pod", pod)];
            write_cpu(e, seq, "a", &labels, i * SEC, &stacks);
        }
    }
    e.store().flush().await.expect("flush");
    let block = &e.store().manifest().blocks[0];
    assert!(block.tenants[&tenant("a")].sums.is_some(), "20 rows a sum");
    write_cpu(
        e,
        seq + 1,
        "a",
        &[("service_name", "api"), ("pod", "p1")],
        30 * SEC,
        &[(&["main", "work"], 100)],
    );
}

#[tokio::test]
async fn a_merge_adds_the_sums_of_blocks_inside_its_range() {
    let e = engine().await;
    one_summed_block(&e).await;
    let a = tenant("a");
    let merge = |selector: &'static str, from, to| {
        let e = &e;
        let a = a.clone();
        async move { by_frames(&e.merge(&a, &q(selector, from, to)).await.expect("merge")) }
    };

    let before = e.blocks_answered_by_sums();
    let api = merge("{service_name=\"api\"}", 0, 100).await;
    assert_eq!(
        e.blocks_answered_by_sums(),
        before + 1,
        "the block was summed"
    );
    // The same selection as a regular expression is decided row by row: the scan's answer.
    let scanned = merge("{service_name=~\"api\"}", 0, 100).await;
    assert_eq!(e.blocks_answered_by_sums(), before + 1, "a regex scans");
    assert_eq!(api, scanned);
    // 1 + ... + 20 for two pods, and the buffer's 100 (values are the CPU ns column).
    let ns = 10_000_000;
    assert_eq!(api["work;main"], (2 * 210 + 100) * ns);
    assert_eq!(api["idle;main"], 2 * 20 * 2 * ns);
    assert_eq!(api["p2;api;main"], 20 * 3 * ns);
    assert!(!api.contains_key("p1;web;main"));

    // A label matcher picks series out of the sums.
    let p1 = merge("{service_name=\"api\", pod=\"p1\"}", 0, 100).await;
    assert_eq!(e.blocks_answered_by_sums(), before + 2);
    assert_eq!(
        p1,
        merge("{service_name=\"api\", pod=~\"p1\"}", 0, 100).await
    );
    assert!(!p1.contains_key("p2;api;main"));
    let all = merge("{}", 0, 100).await;
    assert_eq!(all, merge("{pod=~\".*\"}", 0, 100).await);
    assert_eq!(all["p1;web;main"], 20 * 3 * ns);
    let nothing = merge("{pod=\"p9\"}", 0, 100).await;
    assert!(nothing.is_empty(), "{nothing:?}");

    // A range that cuts the block reads its rows.
    let summed = e.blocks_answered_by_sums();
    let cut = merge("{service_name=\"api\"}", 0, 11).await;
    assert_eq!(
        e.blocks_answered_by_sums(),
        summed,
        "a cut block is scanned"
    );
    assert_eq!(cut["work;main"], 2 * 55 * ns);
}

/// Forty profiles a minute apart for pods p1 and p2 of `api`, one block: its sums are cut into
/// 10-minute slices (5-minute ones would hold 8 times the entries of whole-block sums).
async fn one_sliced_block(e: &QueryEngine) {
    let mut seq = 0;
    for i in 0..40 {
        for pod in ["p1", "p2"] {
            seq += 1;
            let stacks: [(&[&str], i64); 3] = [
                (&["main", "work"], i + 1),
                (&["main", "idle"], 2),
                (&["main", "api", pod], 3),
            ];
            let labels = [("service_name", "api"), ("pod", pod)];
            write_cpu(e, seq, "a", &labels, i * 60 * SEC, &stacks);
        }
    }
    e.store().flush().await.expect("flush");
    let block = &e.store().manifest().blocks[0];
    let meta = &block.tenants[&tenant("a")];
    assert!(meta.sums.is_some());
    assert_eq!(meta.sums_slice_nanos, 600 * SEC, "10-minute slices");
}

#[tokio::test]
async fn a_merge_over_part_of_a_block_adds_the_slices_inside_and_scans_the_edges() {
    let e = engine().await;
    one_sliced_block(&e).await;
    let a = tenant("a");
    let merge = |selector: &'static str, from, to| {
        let e = &e;
        let a = a.clone();
        async move { by_frames(&e.merge(&a, &q(selector, from, to)).await.expect("merge")) }
    };
    let ns = 10_000_000;
    // Profiles at minutes 5 to 35 (31 of them a pod): slices [10, 20) and [20, 30) minutes are
    // summed, minutes 5-9 and 30-35 scanned.
    let before = e.blocks_answered_by_sums();
    let cut = merge("{service_name=\"api\"}", 300, 2130).await;
    assert_eq!(
        e.blocks_answered_by_sums(),
        before + 1,
        "slices of the block summed"
    );
    assert_eq!(cut, merge("{service_name=~\"api\"}", 300, 2130).await);
    let work: i64 = (5..=35).map(|i| i + 1).sum();
    assert_eq!(cut["work;main"], 2 * work * ns);
    assert_eq!(cut["idle;main"], 2 * 31 * 2 * ns);
    assert_eq!(cut["p2;api;main"], 31 * 3 * ns);

    // Ranges whose edges fall on slice boundaries, inside one slice, and past the block.
    for (from, to) in [
        (600, 1200),
        (600, 1800),
        (0, 1199),
        (610, 1190),
        (1200, 9000),
        (-50, 30),
    ] {
        let summed = merge("{service_name=\"api\", pod=\"p1\"}", from, to).await;
        let scanned = merge("{service_name=\"api\", pod=~\"p1\"}", from, to).await;
        assert_eq!(summed, scanned, "[{from}, {to}) s");
        let profiles = (0..40).filter(|i| (from..to).contains(&(i * 60)));
        let work: i64 = profiles.map(|i| i + 1).sum();
        assert_eq!(
            summed.get("work;main").copied().unwrap_or(0),
            work * ns,
            "[{from}, {to}) s"
        );
    }
}
