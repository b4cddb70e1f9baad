use firn_query::{Aggregation, Error, ProfileQuery, SeriesOptions, StackFilter, ValuePage};
use firn_storage::Nanos;

use crate::fixtures::{CPU, SEC, engine, tenant, write_cpu};

const HOT: &[&str] = &["main", "serve", "hash"];
const COLD: &[&str] = &["main", "serve", "parse"];
const GC: &[&str] = &["runtime", "gc"];

async fn populated() -> firn_query::QueryEngine {
    let e = engine().await;
    write_cpu(
        &e,
        1,
        "a",
        &[("service_name", "api"), ("pod", "p1")],
        10 * SEC,
        &[(HOT, 5), (COLD, 1)],
    );
    write_cpu(
        &e,
        2,
        "a",
        &[("service_name", "api"), ("pod", "p2")],
        20 * SEC,
        &[(HOT, 3), (GC, 2)],
    );
    // Flush half, so queries read a block and the buffer together.
    e.store().flush().await.expect("flush");
    // A label only newer data has: a dynamic column the block lacks.
    write_cpu(
        &e,
        3,
        "a",
        &[("service_name", "api"), ("pod", "p1"), ("region", "eu")],
        30 * SEC,
        &[(HOT, 1)],
    );
    write_cpu(&e, 4, "a", &[("service_name", "db")], 30 * SEC, &[(GC, 7)]);
    write_cpu(
        &e,
        5,
        "b",
        &[("service_name", "api")],
        30 * SEC,
        &[(HOT, 100)],
    );
    e
}

/// SQL results as the table people read.
fn table_text(batches: &[datafusion::arrow::array::RecordBatch]) -> String {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .expect("format")
        .to_string()
}

/// One profile of tenant "a" with 3000 distinct stacks `main;leaf(i)`, one sample each.
fn write_wide(e: &firn_query::QueryEngine, leaf: impl Fn(usize) -> String) {
    let stacks: Vec<Vec<String>> = (0..3000)
        .map(|i| vec!["main".to_owned(), leaf(i)])
        .collect();
    let refs: Vec<Vec<&str>> = stacks
        .iter()
        .map(|s| s.iter().map(String::as_str).collect())
        .collect();
    let pairs: Vec<(&[&str], i64)> = refs.iter().map(|s| (s.as_slice(), 1)).collect();
    write_cpu(e, 1, "a", &[], SEC, &pairs);
}

fn q(selector: &str) -> ProfileQuery {
    ProfileQuery::new(selector, Nanos(0), Nanos(100 * SEC)).expect("valid query")
}

#[tokio::test]
async fn merge_sums_across_block_and_buffer_per_tenant() {
    let e = populated().await;
    let m = e
        .merge(&tenant("a"), &q(&format!("{CPU}{{service_name=\"api\"}}")))
        .await
        .expect("merge");
    let top = m.top();
    let hash = top.iter().find(|t| t.function == "hash").expect("hash");
    assert_eq!(
        hash.flat,
        9 * 10_000_000,
        "5 + 3 + 1 samples; tenant b's 100 are not visible"
    );
    let main = top.iter().find(|t| t.function == "main").expect("main");
    assert_eq!(main.cumulative, 10 * 10_000_000);
    assert_eq!(m.total(), 12 * 10_000_000);
    assert_eq!(m.period, 10_000_000);
    let folded = m.folded();
    assert!(folded.contains("main;serve;hash 90000000\n"), "{folded}");
}

#[tokio::test]
async fn block_footers_are_read_once_and_cached() {
    let e = populated().await;
    assert_eq!(e.cached_footers(), 0);
    let query = q(&format!("{CPU}{{service_name=\"api\"}}"));
    let first = e.merge(&tenant("a"), &query).await.expect("merge");
    assert_eq!(e.cached_footers(), 1, "the one block's footer");
    let second = e.merge(&tenant("a"), &query).await.expect("merge");
    assert_eq!(e.cached_footers(), 1, "read from the cache, not again");
    assert_eq!(first.folded(), second.folded());
}

#[tokio::test]
async fn label_filters_work_on_labels_some_blocks_lack() {
    let e = populated().await;
    let eu = e
        .merge(&tenant("a"), &q(&format!("{CPU}{{region=\"eu\"}}")))
        .await
        .expect("merge");
    assert_eq!(eu.total(), 10_000_000);
    let not_eu = e
        .merge(&tenant("a"), &q(&format!("{CPU}{{region!=\"eu\"}}")))
        .await
        .expect("merge");
    assert_eq!(
        not_eu.total(),
        (5 + 1 + 3 + 2 + 7) * 10_000_000,
        "absent labels match != as empty"
    );
    let re = e
        .merge(
            &tenant("a"),
            &q(&format!("{CPU}{{pod=~\"p[12]\", service_name!~\"d.*\"}}")),
        )
        .await
        .expect("merge");
    assert_eq!(re.total(), (5 + 1 + 3 + 2 + 1) * 10_000_000);
    // The block holds pods p1 and p2: its rows are filtered one by one.
    let p1 = e
        .merge(&tenant("a"), &q(&format!("{CPU}{{pod=\"p1\"}}")))
        .await
        .expect("merge");
    assert_eq!(p1.total(), (5 + 1 + 1) * 10_000_000);
    let none = e
        .merge(&tenant("a"), &q(&format!("{CPU}{{nosuch=\"x\"}}")))
        .await
        .expect("merge");
    assert_eq!(none.total(), 0);
}

#[tokio::test]
async fn time_range_and_profile_type_select_rows() {
    let e = populated().await;
    let early = ProfileQuery::new(CPU, Nanos(0), Nanos(15 * SEC)).expect("query");
    assert_eq!(
        e.merge(&tenant("a"), &early).await.expect("merge").total(),
        6 * 10_000_000
    );
    let samples = e
        .merge(
            &tenant("a"),
            &q("process_cpu:samples:count:cpu:nanoseconds"),
        )
        .await
        .expect("merge");
    assert_eq!(samples.total(), 19);
    let delta = e
        .merge(&tenant("a"), &q(&format!("{CPU}:delta")))
        .await
        .expect("merge");
    assert_eq!(delta.total(), 19 * 10_000_000);
}

#[tokio::test]
async fn flame_graph_snapshot_and_truncation() {
    let e = populated().await;
    let fg = e
        .flamegraph(&tenant("a"), &q(CPU), 100)
        .await
        .expect("flame graph");
    insta::assert_json_snapshot!("flamegraph_tenant_a", fg);
    let small = e
        .flamegraph(&tenant("a"), &q(CPU), 4)
        .await
        .expect("flame graph");
    fn frames(n: &firn_query::FlameNode) -> usize {
        usize::from(n.name != firn_query::flamegraph::OTHER)
            + n.children.iter().map(frames).sum::<usize>()
    }
    assert_eq!(frames(&small.root), 4, "root plus the three largest frames");
    assert_eq!(
        small.root.total, fg.root.total,
        "truncation keeps the total"
    );
    insta::assert_json_snapshot!("flamegraph_tenant_a_truncated", small);
}

#[tokio::test]
async fn stack_filter_keeps_matching_stacks() {
    let e = populated().await;
    let mut query = q(CPU);
    query.stack_filter = Some(StackFilter::Function("gc".into()));
    assert_eq!(
        e.merge(&tenant("a"), &query).await.expect("merge").total(),
        9 * 10_000_000
    );
    query.stack_filter = Some(StackFilter::Regex(
        regex::Regex::new("^(hash|parse)$").expect("regex"),
    ));
    assert_eq!(
        e.merge(&tenant("a"), &query).await.expect("merge").total(),
        10 * 10_000_000
    );
}

#[tokio::test]
async fn diff_carries_both_sides() {
    let e = populated().await;
    let left = ProfileQuery::new(CPU, Nanos(0), Nanos(15 * SEC)).expect("query");
    let right = ProfileQuery::new(CPU, Nanos(15 * SEC), Nanos(100 * SEC)).expect("query");
    let fg = e
        .diff(&tenant("a"), &left, &right, 100)
        .await
        .expect("diff");
    let main = fg
        .root
        .children
        .iter()
        .find(|n| n.name == "main")
        .expect("main");
    assert_eq!(main.total, 6 * 10_000_000);
    assert_eq!(main.right.expect("right side").0, 4 * 10_000_000);
    let runtime = fg
        .root
        .children
        .iter()
        .find(|n| n.name == "runtime")
        .expect("runtime");
    assert_eq!(
        (runtime.total, runtime.right.expect("right").0),
        (0, 9 * 10_000_000)
    );
}

#[tokio::test]
async fn series_group_by_and_top_n() {
    let e = populated().await;
    let options = SeriesOptions {
        step: Nanos(10 * SEC),
        group_by: vec!["pod".into()],
        aggregation: Aggregation::Sum,
        limit: None,
    };
    let series = e
        .series(
            &tenant("a"),
            &q(&format!("{CPU}{{service_name=\"api\"}}")),
            &options,
        )
        .await
        .expect("series");
    assert_eq!(series.len(), 2);
    let p1 = series
        .iter()
        .find(|s| s.labels == vec![("pod".to_owned(), "p1".to_owned())])
        .expect("p1");
    assert_eq!(
        p1.points,
        vec![(Nanos(10 * SEC), 6e7), (Nanos(30 * SEC), 1e7)]
    );
    let top1 = SeriesOptions {
        limit: Some(1),
        ..options.clone()
    };
    let series = e
        .series(&tenant("a"), &q(CPU), &top1)
        .await
        .expect("series");
    assert_eq!(series.len(), 1);
    assert_eq!(
        series[0].labels,
        vec![],
        "p1 and the pod-less db series both total 7; ties break by labels"
    );
}

#[tokio::test]
async fn labels_values_and_profile_types() {
    let e = populated().await;
    let names = e.label_names(&tenant("a"), &q("{}")).await.expect("names");
    assert_eq!(names, ["pod", "region", "service_name"]);
    let names = e
        .label_names(&tenant("a"), &q("{service_name=\"db\"}"))
        .await
        .expect("names");
    assert_eq!(names, ["service_name"]);
    let values = e
        .label_values(&tenant("a"), &q("{}"), "pod", &ValuePage::ALL)
        .await
        .expect("values");
    assert_eq!(values, ["p1", "p2"]);
    let types = e
        .profile_types(&tenant("b"), Nanos(0), Nanos(100 * SEC))
        .await
        .expect("types");
    let ids: Vec<String> = types.iter().map(|t| t.id()).collect();
    assert_eq!(ids, [CPU, "process_cpu:samples:count:cpu:nanoseconds"]);
}

#[tokio::test]
async fn sql_is_read_only_tenant_scoped_and_limited() {
    let e = populated().await;
    let batches = e
        .sql(&tenant("a"), "SELECT \"labels.pod\" AS pod, sum(value) AS v FROM samples WHERE profile_type = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds' GROUP BY 1 ORDER BY 1 NULLS LAST")
        .await
        .expect("sql");
    let text = table_text(&batches);
    insta::assert_snapshot!("sql_by_pod", text);

    let batches = e
        .sql(&tenant("a"), "SELECT s.function, sum(x.value) AS v FROM samples x JOIN stacks s ON x.stack_id = s.stack_id WHERE s.depth = 0 AND x.profile_type LIKE 'process_cpu:cpu%' GROUP BY 1 ORDER BY 1")
        .await
        .expect("sql with stacks");
    let text = table_text(&batches);
    insta::assert_snapshot!("sql_roots_via_stacks", text);

    for statement in [
        "DROP TABLE samples",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO samples SELECT * FROM samples",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let err = e.sql(&tenant("a"), statement).await.expect_err(statement);
        assert!(err.is_client_error(), "{statement}: {err}");
    }
    let err = e
        .sql(&tenant("a"), "SELECT * FROM nosuch")
        .await
        .expect_err("unknown table");
    assert!(matches!(err, Error::InvalidQuery(_)), "{err}");
    // Tenant b's rows are not in tenant a's table whatever the predicate.
    let batches = e
        .sql(
            &tenant("a"),
            "SELECT count(*) AS n FROM samples WHERE value = 1000000000",
        )
        .await
        .expect("sql");
    let text = table_text(&batches);
    assert!(text.contains("| 0 |"), "{text}");
}

#[tokio::test]
async fn row_and_memory_limits_fail_cleanly() {
    let store = std::sync::Arc::new(firn_storage::testing::memory_store(Default::default()).await);
    let tight = firn_query::QueryConfig {
        max_rows: 3,
        memory_limit: 64 * 1024,
        ..Default::default()
    };
    let e = firn_query::QueryEngine::new(store, tight).expect("engine");
    write_wide(&e, |i| format!("f{i}"));
    let err = e
        .sql(&tenant("a"), "SELECT value FROM samples")
        .await
        .expect_err("rows");
    assert!(matches!(err, Error::TooManyRows { limit: 3 }), "{err}");
    let err = e
        .sql(
            &tenant("a"),
            "SELECT stack_id, time_nanos, count(*) FROM samples GROUP BY 1, 2 ORDER BY 3 LIMIT 1",
        )
        .await
        .expect_err("memory");
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err}");
}

#[tokio::test]
async fn blocks_outside_the_selection_are_never_opened() {
    use object_store::ObjectStoreExt;
    let e = engine().await;
    write_cpu(
        &e,
        1,
        "a",
        &[("service_name", "api")],
        10 * SEC,
        &[(HOT, 1)],
    );
    e.store().flush().await.expect("flush");
    write_cpu(
        &e,
        2,
        "a",
        &[("service_name", "db")],
        1000 * SEC,
        &[(GC, 1)],
    );
    let late = e.store().flush().await.expect("flush").expect("block");
    // Remove the late block's data: a query that opened it would now fail.
    let key = e.store().paths().block_samples(&late.id);
    e.store().object_store().delete(&key).await.expect("delete");

    let early = ProfileQuery::new(CPU, Nanos(0), Nanos(100 * SEC)).expect("query");
    assert_eq!(
        e.merge(&tenant("a"), &early)
            .await
            .expect("pruned by time")
            .total(),
        10_000_000
    );
    let by_label = ProfileQuery::new(
        &format!("{CPU}{{service_name=\"api\"}}"),
        Nanos(0),
        Nanos(2000 * SEC),
    )
    .expect("query");
    assert_eq!(
        e.merge(&tenant("a"), &by_label)
            .await
            .expect("pruned by label values")
            .total(),
        10_000_000
    );
    let everything = ProfileQuery::new(CPU, Nanos(0), Nanos(2000 * SEC)).expect("query");
    assert!(
        e.merge(&tenant("a"), &everything).await.is_err(),
        "the deleted block is read"
    );
}

#[tokio::test]
async fn series_average_is_per_profile() {
    let e = populated().await;
    let options = SeriesOptions {
        step: Nanos(100 * SEC),
        group_by: vec![],
        aggregation: Aggregation::Average,
        limit: None,
    };
    let query = q(&format!("{CPU}{{service_name=\"api\"}}"));
    let series = e
        .series(&tenant("a"), &query, &options)
        .await
        .expect("series");
    // Three api profiles of 6, 5 and 1 samples in the one step.
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].points, vec![(Nanos(0), 4e7)]);
    let sum = SeriesOptions {
        aggregation: Aggregation::Sum,
        ..options
    };
    let series = e.series(&tenant("a"), &query, &sum).await.expect("series");
    assert_eq!(series[0].points, vec![(Nanos(0), 12e7)]);
}

#[tokio::test]
async fn tenants_sharing_a_block_never_see_each_other() {
    let e = engine().await;
    write_cpu(
        &e,
        1,
        "a",
        &[("service_name", "api")],
        10 * SEC,
        &[(HOT, 1)],
    );
    write_cpu(
        &e,
        2,
        "b",
        &[("service_name", "api"), ("secret", "b-only")],
        10 * SEC,
        &[(GC, 50)],
    );
    let block = e.store().flush().await.expect("flush").expect("block");
    assert_eq!(block.tenants.len(), 2, "one block holds both tenants");

    let merged = e.merge(&tenant("a"), &q(CPU)).await.expect("merge");
    assert_eq!(merged.total(), 10_000_000);
    assert_eq!(
        e.label_names(&tenant("a"), &q("{}")).await.expect("names"),
        ["service_name"]
    );
    for sql in [
        "SELECT count(*) AS n FROM samples",
        "SELECT count(*) AS n FROM samples WHERE value > 0 OR value <= 0",
        "SELECT count(*) AS n FROM (SELECT * FROM samples UNION ALL SELECT * FROM samples WHERE value = 500000000)",
    ] {
        let batches = e.sql(&tenant("a"), sql).await.expect("sql");
        let text = table_text(&batches);
        assert!(text.contains("| 2 |"), "{sql}: {text}");
    }
    let batches = e
        .sql(
            &tenant("a"),
            "SELECT DISTINCT function FROM stacks ORDER BY 1",
        )
        .await
        .expect("sql");
    let text = table_text(&batches);
    assert!(
        !text.contains("gc") && !text.contains("runtime"),
        "tenant b's frames leak: {text}"
    );
    assert!(text.contains("hash"), "{text}");
}

#[tokio::test]
async fn huge_values_saturate_instead_of_overflowing() {
    let e = engine().await;
    let big = i64::MAX / 2 + 1;
    let mut b = firn_storage::testing::ProfileBuilder::cpu().time(Nanos(SEC));
    b.sample(HOT, &[big, big], &[])
        .sample(HOT, &[big, big], &[]);
    let request =
        firn_storage::testing::pprof_write("a", &[("__name__", "process_cpu")], b.gzip(), Nanos(0));
    e.store()
        .write(firn_storage::SeqNo(1), request)
        .expect("write");
    let m = e.merge(&tenant("a"), &q(CPU)).await.expect("merge");
    assert_eq!(m.total(), i64::MAX);
    let fg = firn_query::FlameGraph::from_merged(&m, 100);
    assert_eq!(fg.root.total, i64::MAX);
    e.store().flush().await.expect("flush");
    let m = e.merge(&tenant("a"), &q(CPU)).await.expect("merge");
    assert_eq!(m.total(), i64::MAX, "read back from the block");
}

/// Filters the scan applies exactly are not evaluated again above it; others are.
#[tokio::test]
async fn exact_filters_are_not_evaluated_twice() {
    let e = populated().await;
    let plan = |sql: &str| {
        let e = &e;
        let sql = format!("EXPLAIN {sql}");
        async move { table_text(&e.sql(&tenant("a"), &sql).await.expect("explain")) }
    };
    let exact = plan(&format!(
        "SELECT count(*) FROM samples WHERE time_nanos >= 0 AND time_nanos < {} AND profile_type = '{CPU}' AND \"labels.pod\" = 'p1'",
        100 * SEC
    ))
    .await;
    assert!(!exact.contains("FilterExec"), "{exact}");
    assert!(exact.contains("BlockScanExec"), "{exact}");
    let inexact = plan("SELECT count(*) FROM samples WHERE value > 20000000").await;
    assert!(inexact.contains("FilterExec"), "{inexact}");
    // And the answers agree with a filter DataFusion evaluates itself.
    let count = |sql: String| {
        let e = &e;
        async move { table_text(&e.sql(&tenant("a"), &sql).await.expect("sql")) }
    };
    let pushed = count(format!(
        "SELECT count(*) AS n FROM samples WHERE time_nanos < {} AND \"labels.pod\" = 'p1'",
        15 * SEC
    ))
    .await;
    let evaluated = count(format!(
        "SELECT count(*) AS n FROM samples WHERE time_nanos + 0 < {} AND concat(\"labels.pod\", '') = 'p1'",
        15 * SEC
    ))
    .await;
    assert_eq!(pushed, evaluated);
    assert!(pushed.contains("| 4 |"), "{pushed}");
}

/// The `stacks` table is built inside the query's memory pool: frames past the limit fail the
/// query cleanly, while the merge under it still fits.
#[tokio::test]
async fn the_stacks_table_counts_against_the_memory_limit() {
    let store = std::sync::Arc::new(firn_storage::testing::memory_store(Default::default()).await);
    let tight = firn_query::QueryConfig {
        memory_limit: 400 * 1024,
        ..Default::default()
    };
    let e = firn_query::QueryEngine::new(store, tight).expect("engine");
    let long = "x".repeat(200);
    write_wide(&e, |i| format!("{long}{i}"));
    let count = e
        .sql(&tenant("a"), "SELECT count(*) AS n FROM samples")
        .await
        .expect("fits");
    let text = table_text(&count);
    assert!(
        text.contains("| 6000 |"),
        "two sample types of 3000 stacks: {text}"
    );
    let err = e
        .sql(&tenant("a"), "SELECT count(*) FROM stacks")
        .await
        .expect_err("memory");
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err}");
}

#[tokio::test]
async fn series_ids_agree_across_block_and_buffer() {
    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{Int64Type, UInt64Type};

    let e = engine().await;
    let p1 = [("service_name", "api"), ("pod", "p1")];
    write_cpu(&e, 1, "a", &p1, 10 * SEC, &[(HOT, 5)]);
    // Blocks keep no series id: the block's rows get theirs from their labels.
    e.store().flush().await.expect("flush");
    write_cpu(&e, 2, "a", &p1, 20 * SEC, &[(HOT, 3)]);
    write_cpu(
        &e,
        3,
        "a",
        &[("service_name", "api"), ("pod", "p2")],
        20 * SEC,
        &[(GC, 2)],
    );
    let ids = |batches: &[RecordBatch]| -> Vec<(i64, String, u64)> {
        let mut out = Vec::new();
        for b in batches {
            let pods = datafusion::arrow::compute::cast(
                b.column(1),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .expect("cast");
            for r in 0..b.num_rows() {
                out.push((
                    b.column(0).as_primitive::<Int64Type>().value(r),
                    pods.as_string::<i32>().value(r).to_owned(),
                    b.column(2).as_primitive::<UInt64Type>().value(r),
                ));
            }
        }
        out
    };
    let batches = e
        .sql(
            &tenant("a"),
            "SELECT DISTINCT time_nanos, \"labels.pod\", series_id FROM samples ORDER BY 1, 2",
        )
        .await
        .expect("sql");
    let rows = ids(&batches);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let (block, buffered, other) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!((block.1.as_str(), buffered.1.as_str()), ("p1", "p1"));
    assert_eq!(block.2, buffered.2, "one series, one id: {rows:?}");
    assert_ne!(block.2, other.2, "another label set, another id");
    // A filter on the id finds the block's rows too (it never prunes a page by it).
    let batches = e
        .sql(
            &tenant("a"),
            &format!(
                "SELECT DISTINCT time_nanos, \"labels.pod\", series_id FROM samples \
                 WHERE series_id = {} ORDER BY 1",
                buffered.2
            ),
        )
        .await
        .expect("sql");
    assert_eq!(ids(&batches), vec![block.clone(), buffered.clone()]);
}
