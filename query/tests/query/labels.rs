//! Label names and values take a block's part from its metadata when every row of the block is
//! selected: a block whose object is gone still answers then, and only then.

use std::sync::Arc;

use firn_query::{ProfileQuery, QueryConfig, QueryEngine, ValuePage};
use firn_storage::testing::memory_store;
use firn_storage::{BlockId, Nanos, StoreConfig};
use object_store::ObjectStoreExt;

use crate::fixtures::{SEC, engine, tenant, write_cpu};

const STACK: &[&str] = &["main", "work"];

fn q(selector: &str, from: i64, to: i64) -> ProfileQuery {
    ProfileQuery::new(selector, Nanos(from * SEC), Nanos(to * SEC)).expect("valid query")
}

/// Two blocks (pods p1 and p2 at 10 s and 20 s; p3 at 30 s) and the buffer (p4 at 40 s, with a
/// `region` the blocks lack), all of service `api`; the first block's object deleted.
async fn first_block_gone(e: &QueryEngine) -> BlockId {
    let api = ("service_name", "api");
    write_cpu(e, 1, "a", &[api, ("pod", "p1")], 10 * SEC, &[(STACK, 1)]);
    write_cpu(e, 2, "a", &[api, ("pod", "p2")], 20 * SEC, &[(STACK, 2)]);
    e.store().flush().await.expect("flush");
    write_cpu(e, 3, "a", &[api, ("pod", "p3")], 30 * SEC, &[(STACK, 3)]);
    e.store().flush().await.expect("flush");
    write_cpu(
        e,
        4,
        "a",
        &[api, ("pod", "p4"), ("region", "eu")],
        40 * SEC,
        &[(STACK, 4)],
    );
    let manifest = e.store().manifest();
    let first = manifest
        .blocks
        .iter()
        .min_by_key(|b| b.min_time)
        .expect("two blocks")
        .id
        .clone();
    e.store()
        .object_store()
        .delete(&e.store().paths().block_samples(&first))
        .await
        .expect("delete the block object");
    first
}

#[tokio::test]
async fn whole_blocks_answer_from_metadata() {
    let e = engine().await;
    first_block_gone(&e).await;
    let a = tenant("a");

    let values = e
        .label_values(&a, &q("{}", 0, 100), "pod", &ValuePage::ALL)
        .await
        .expect("the blocks inside the range answer from metadata");
    assert_eq!(values, ["p1", "p2", "p3", "p4"]);
    // A matcher every row of the blocks passes still lets the metadata answer.
    let values = e
        .label_values(
            &a,
            &q("{service_name=\"api\"}", 0, 100),
            "pod",
            &ValuePage::ALL,
        )
        .await
        .expect("service_name is api on every row");
    assert_eq!(values, ["p1", "p2", "p3", "p4"]);
    let names = e
        .label_names(&a, &q("{}", 0, 100))
        .await
        .expect("names from metadata and the buffer");
    assert_eq!(names, ["pod", "region", "service_name"]);
    // The range misses the first block: its object is never needed.
    let values = e
        .label_values(&a, &q("{}", 25, 100), "pod", &ValuePage::ALL)
        .await
        .expect("values");
    assert_eq!(values, ["p3", "p4"]);
}

#[tokio::test]
async fn partly_selected_blocks_are_read() {
    let e = engine().await;
    first_block_gone(&e).await;
    let a = tenant("a");
    // The range cuts the first block, and `pod="p1"` holds for some of its rows only: either
    // way the rows must be read, and the object is gone.
    for query in [q("{}", 15, 100), q("{pod=\"p1\"}", 0, 100)] {
        e.label_values(&a, &query, "pod", &ValuePage::ALL)
            .await
            .expect_err("the first block must be read");
        e.label_names(&a, &query)
            .await
            .expect_err("the first block must be read");
    }
}

#[tokio::test]
async fn labels_with_too_many_values_to_list_are_scanned() {
    let mut config = StoreConfig::default();
    config.block.max_label_values = 1;
    let store = memory_store(config).await;
    let e = QueryEngine::new(Arc::new(store), QueryConfig::default()).expect("engine");
    first_block_gone(&e).await;
    let a = tenant("a");
    // The first block has two pods, more than its metadata lists: it must be read for them.
    e.label_values(&a, &q("{}", 0, 100), "pod", &ValuePage::ALL)
        .await
        .expect_err("the first block must be read");
    // Its single service is listed.
    let values = e
        .label_values(&a, &q("{}", 0, 100), "service_name", &ValuePage::ALL)
        .await
        .expect("one value each, listed");
    assert_eq!(values, ["api"]);
}

fn page(after: Option<&str>, limit: usize) -> ValuePage {
    ValuePage {
        after: after.map(str::to_owned),
        limit: Some(limit),
        prefix: None,
    }
}

/// Pages walk a label's values in order, whether a block lists them in its metadata or must be
/// scanned for them, and the buffer's with them: every value once, none skipped.
#[tokio::test]
async fn values_come_a_page_at_a_time_from_metadata_and_scans() {
    for listed in [64, 1] {
        let mut config = StoreConfig::default();
        config.block.max_label_values = listed;
        let e = QueryEngine::new(Arc::new(memory_store(config).await), QueryConfig::default())
            .expect("engine");
        let pods: Vec<String> = (0..25).map(|i| format!("p{i:02}")).collect();
        for (i, pod) in pods.iter().enumerate() {
            write_cpu(
                &e,
                i as u64 + 1,
                "a",
                &[("pod", pod.as_str())],
                (i as i64 + 1) * SEC,
                &[(STACK, 1)],
            );
            if i % 10 == 9 {
                e.store().flush().await.expect("flush");
            }
        }
        let a = tenant("a");
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let values = e
                .label_values(&a, &q("{}", 0, 100), "pod", &page(after.as_deref(), 7))
                .await
                .expect("a page");
            assert!(values.len() <= 7, "{values:?}");
            seen.extend(values.iter().cloned());
            if values.len() < 7 {
                break;
            }
            after = values.last().cloned();
        }
        assert_eq!(seen, pods, "listed {listed}");
        // A page starting after a value that is not stored starts at the next one.
        let values = e
            .label_values(&a, &q("{}", 0, 100), "pod", &page(Some("p10x"), 2))
            .await
            .expect("a page");
        assert_eq!(values, ["p11", "p12"], "listed {listed}");
        // A prefix keeps the values that start with it, a page at a time too.
        let prefixed = |after: Option<&str>, prefix: &str| ValuePage {
            prefix: Some(prefix.to_owned()),
            ..page(after, 4)
        };
        let values = e
            .label_values(&a, &q("{}", 0, 100), "pod", &prefixed(None, "p1"))
            .await
            .expect("a page");
        assert_eq!(values, ["p10", "p11", "p12", "p13"], "listed {listed}");
        let values = e
            .label_values(&a, &q("{}", 0, 100), "pod", &prefixed(Some("p17"), "p1"))
            .await
            .expect("a page");
        assert_eq!(values, ["p18", "p19"], "listed {listed}");
        let values = e
            .label_values(&a, &q("{}", 0, 100), "pod", &prefixed(None, "q"))
            .await
            .expect("a page");
        assert!(values.is_empty(), "listed {listed}: {values:?}");
    }
}
