//! The query engine: profile queries and read-only SQL over a store, planned by DataFusion
//! with a bounded memory pool.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::common::Column;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::functions_aggregate::expr_fn::{count, min};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, Expr, SessionConfig, SessionContext, lit};
use firn_storage::block::{ByteRange, SummedPart, TenantBlockMeta};
use firn_storage::filter::MatchOp;
use firn_storage::symbols::SymbolTable;
use firn_storage::{BlockId, Nanos, ProfileType, StackId, Store, TenantId, schema};
use futures::{StreamExt, TryStreamExt};

use crate::error::{Error, Result};
use crate::flamegraph::FlameGraph;
use crate::merged::{MergedProfile, StackFilter};
use crate::selector::Selector;
use crate::stack_sum::{StackSums, SumByStackExec};
use crate::symbol_cache::SymbolCache;
use crate::table::SampleTable;

/// The URL under which the store's object store is registered with DataFusion.
const STORE_URL: &str = "firn://store";

/// Limits and sizes of query execution.
#[derive(Clone, Copy, Debug)]
pub struct QueryConfig {
    /// Memory all running queries of this engine may hold; past it a query fails cleanly.
    pub memory_limit: usize,
    /// Most rows a SQL query may return.
    pub max_rows: usize,
    pub timeout: Duration,
    /// Partitions DataFusion plans with (0 = number of cores).
    pub target_partitions: usize,
    /// Block symbol tables kept in memory (for resolving answers), at most this many...
    pub symbol_cache_entries: usize,
    /// ...and at most this many bytes (least recently used go first).
    pub symbol_cache_bytes: usize,
    /// Blocks' stack ids kept in memory for scans (16 bytes a stack), at most this many bytes.
    pub stack_id_cache_bytes: usize,
    /// Tenants' stack sums of blocks kept in memory, at most this many bytes.
    pub stack_sums_cache_bytes: usize,
    /// Parquet footers and page indexes of blocks kept in memory, at most this many bytes
    /// (DataFusion's file metadata cache: a block's footer is read once, not per query).
    pub metadata_cache_bytes: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit: 1 << 30,
            max_rows: 100_000,
            timeout: Duration::from_secs(60),
            target_partitions: 0,
            symbol_cache_entries: 64,
            symbol_cache_bytes: 256 << 20,
            stack_id_cache_bytes: 64 << 20,
            stack_sums_cache_bytes: 64 << 20,
            metadata_cache_bytes: 64 << 20,
        }
    }
}

/// A selection: selector plus half-open time range.
#[derive(Clone, Debug)]
pub struct ProfileQuery {
    pub selector: Selector,
    pub start: Nanos,
    pub end: Nanos,
    pub stack_filter: Option<StackFilter>,
    /// Only samples with these link ids (a trace's or a span's profile); empty keeps all.
    pub links: LinkSelector,
}

/// Samples picked by the ids linking them to traces: a sample passes when its id is in each
/// non-empty list. The ids are compared as stored (agents write lowercase hex).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub span_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile_ids: Vec<String>,
}

impl LinkSelector {
    pub fn is_empty(&self) -> bool {
        self.trace_ids.is_empty() && self.span_ids.is_empty() && self.profile_ids.is_empty()
    }

    /// `column IN (ids)` for each non-empty list.
    fn filters(&self) -> Vec<Expr> {
        [
            (schema::TRACE_ID, &self.trace_ids),
            (schema::SPAN_ID, &self.span_ids),
            (schema::PROFILE_ID, &self.profile_ids),
        ]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(name, ids)| {
            column(name).in_list(ids.iter().map(|i| lit(i.clone())).collect(), false)
        })
        .collect()
    }
}

impl ProfileQuery {
    pub fn new(selector: &str, start: Nanos, end: Nanos) -> Result<Self> {
        if end <= start {
            return Err(Error::InvalidQuery(format!(
                "time range end {end} is not after start {start}"
            )));
        }
        Ok(Self {
            selector: Selector::parse(selector)?,
            start,
            end,
            stack_filter: None,
            links: LinkSelector::default(),
        })
    }
}

/// How a series query aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Aggregation {
    #[default]
    Sum,
    /// Average per profile within each step.
    Average,
}

#[derive(Clone, Debug)]
pub struct SeriesOptions {
    pub step: Nanos,
    pub group_by: Vec<String>,
    pub aggregation: Aggregation,
    /// Keep the `limit` series with the largest totals.
    pub limit: Option<usize>,
}

/// A page of a label's values, in sorted order: those after `after` (and starting with
/// `prefix`), at most `limit` of them. Each shard keeps only its first `limit`, so a label
/// with a million values costs a page, not the million, past the scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValuePage {
    /// The last value of the previous page (exclusive); the first page when `None`.
    pub after: Option<String>,
    /// Values at most; all when `None`.
    pub limit: Option<usize>,
    /// Only values that start with it (an autocompletion's typed text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl ValuePage {
    /// Every value.
    pub const ALL: ValuePage = ValuePage {
        after: None,
        limit: None,
        prefix: None,
    };

    /// Whether `value` belongs to this page's values or the pages after it.
    pub fn follows(&self, value: &str) -> bool {
        self.after.as_deref().is_none_or(|a| value > a)
            && self.prefix.as_deref().is_none_or(|p| value.starts_with(p))
    }

    /// The page's values out of `values` (sorted).
    pub fn cut(&self, values: BTreeSet<String>) -> Vec<String> {
        values
            .into_iter()
            .filter(|v| self.follows(v))
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }
}

/// The least string above every string starting with `prefix`: its last character that has
/// a successor, raised, and what follows it dropped; `None` when there is none (every
/// character is `char::MAX`).
fn past_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Label names and values, sorted by name.
pub type LabelPairs = Vec<(String, String)>;

/// One time series: its group labels and (step start, value) points.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    pub labels: LabelPairs,
    pub points: Vec<(Nanos, f64)>,
    /// Profiles aggregated into each point, in the order of `points`.
    pub profiles: Vec<u64>,
}

/// Runs queries against one store.
#[derive(Debug)]
pub struct QueryEngine {
    store: Arc<Store>,
    config: QueryConfig,
    runtime: Arc<RuntimeEnv>,
    symbols: Arc<SymbolCache>,
    blocks_summed: std::sync::atomic::AtomicU64,
}

/// Blocks' stack sums read at once by one merge.
const SUMS_READ_CONCURRENCY: usize = 8;

impl QueryEngine {
    pub fn new(store: Arc<Store>, config: QueryConfig) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(config.memory_limit, 1.0)
            .with_metadata_cache_limit(config.metadata_cache_bytes)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|source| Error::Execution { source })?;
        let url = ObjectStoreUrl::parse(STORE_URL).map_err(|source| Error::Execution { source })?;
        runtime.register_object_store(url.as_ref(), store.object_store().clone());
        Ok(Self {
            symbols: Arc::new(SymbolCache::new(
                store.clone(),
                config.symbol_cache_entries,
                config.symbol_cache_bytes,
                config.stack_id_cache_bytes,
                config.stack_sums_cache_bytes,
            )),
            store,
            config,
            runtime,
            blocks_summed: Default::default(),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Block footers (with page indexes) held in the metadata cache.
    pub fn cached_footers(&self) -> usize {
        self.runtime.cache_manager.get_file_metadata_cache().len()
    }

    fn context(&self) -> SessionContext {
        let mut config = SessionConfig::new()
            .with_batch_size(8192)
            .with_information_schema(false);
        if self.config.target_partitions > 0 {
            config = config.with_target_partitions(self.config.target_partitions);
        }
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }

    /// The tenant's table over the store's current snapshot.
    pub fn table(&self, tenant: &TenantId) -> Arc<SampleTable> {
        self.table_with_labels(tenant, &Default::default())
    }

    /// The tenant's table with a column for each of `labels` too (null where no row has it),
    /// so shards answer a scan in one schema.
    pub fn table_with_labels(
        &self,
        tenant: &TenantId,
        labels: &std::collections::BTreeSet<String>,
    ) -> Arc<SampleTable> {
        let url = ObjectStoreUrl::parse(STORE_URL).expect("constant URL parses");
        Arc::new(SampleTable::new(
            tenant.clone(),
            self.store.snapshot(),
            self.store.paths().clone(),
            url,
            self.symbols.clone(),
            labels,
        ))
    }

    pub(crate) fn memory_pool(&self) -> &Arc<dyn datafusion::execution::memory_pool::MemoryPool> {
        &self.runtime.memory_pool
    }

    pub(crate) fn frame(&self, table: Arc<SampleTable>) -> Result<DataFrame> {
        self.context()
            .read_table(table)
            .map_err(|e| self.map_err(e))
    }

    pub(crate) fn map_err(&self, e: DataFusionError) -> Error {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(message) => Error::MemoryLimit {
                limit: self.config.memory_limit,
                message: message.clone(),
            },
            DataFusionError::SQL(..)
            | DataFusionError::Plan(..)
            | DataFusionError::SchemaError(..) => Error::InvalidQuery(e.find_root().to_string()),
            _ => Error::Execution { source: e },
        }
    }

    async fn collect(&self, df: DataFrame) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        self.for_each_batch(df, |batch| {
            batches.push(batch.clone());
            Ok(())
        })
        .await?;
        Ok(batches)
    }

    /// Runs a query, handing each result batch to `f`, within the query timeout.
    pub(crate) async fn for_each_batch(
        &self,
        df: DataFrame,
        f: impl FnMut(&RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let task = Arc::new(df.task_ctx());
        let plan = df
            .create_physical_plan()
            .await
            .map_err(|e| self.map_err(e))?;
        self.run(plan, task, f).await
    }

    /// Runs a physical plan, handing each result batch to `f`, within the query timeout.
    async fn run(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<datafusion::execution::TaskContext>,
        mut f: impl FnMut(&RecordBatch) -> Result<()>,
    ) -> Result<()> {
        let run = async {
            let mut stream = datafusion::physical_plan::execute_stream(plan, task)
                .map_err(|e| self.map_err(e))?;
            while let Some(batch) = stream.try_next().await.map_err(|e| self.map_err(e))? {
                f(&batch)?;
            }
            Ok(())
        };
        tokio::time::timeout(self.config.timeout, run)
            .await
            .map_err(|_| Error::Timeout {
                seconds: self.config.timeout.as_secs(),
            })?
    }

    /// Filters selecting `query` from a table: `None` when the selection is provably empty.
    pub(crate) fn filters(table: &SampleTable, query: &ProfileQuery) -> Option<Expr> {
        let mut filters = vec![
            column(schema::TIME).gt_eq(lit(query.start.0)),
            column(schema::TIME).lt(lit(query.end.0)),
        ];
        if let Some(pt) = &query.selector.profile_type {
            filters.push(column(schema::PROFILE_TYPE).eq(lit(pt.id())));
        }
        if let Some(delta) = query.selector.delta {
            filters.push(column(schema::DELTA).eq(lit(delta)));
        }
        let names = table.label_names();
        for m in &query.selector.matchers {
            if !names.contains(&m.name) {
                // No row has this label: it matches as "" everywhere or nowhere.
                if m.matches(None) {
                    continue;
                }
                return None;
            }
            let column = column(&schema::label_column(&m.name));
            let filled = || {
                datafusion::functions::expr_fn::coalesce(vec![
                    datafusion::logical_expr::cast(
                        column.clone(),
                        datafusion::arrow::datatypes::DataType::Utf8,
                    ),
                    lit(""),
                ])
            };
            filters.push(match m.op {
                MatchOp::Eq if !m.value.is_empty() => column.clone().eq(lit(m.value.clone())),
                MatchOp::Eq => filled().eq(lit("")),
                MatchOp::NotEq => filled().not_eq(lit(m.value.clone())),
                MatchOp::Re => datafusion::functions::expr_fn::regexp_like(
                    filled(),
                    lit(format!("^(?s:{})$", m.value)),
                    None,
                ),
                MatchOp::NotRe => {
                    datafusion::prelude::not(datafusion::functions::expr_fn::regexp_like(
                        filled(),
                        lit(format!("^(?s:{})$", m.value)),
                        None,
                    ))
                }
            });
        }
        filters.extend(query.links.filters());
        datafusion::logical_expr::utils::conjunction(filters)
    }

    /// Sums values by stack over the selection and resolves the symbols of those stacks.
    pub async fn merge(&self, tenant: &TenantId, query: &ProfileQuery) -> Result<MergedProfile> {
        let table = self.table(tenant);
        let mut merged = MergedProfile {
            profile_type: query.selector.profile_type.clone(),
            period: 0,
            duration_nanos: query.end.0.saturating_sub(query.start.0),
            time_nanos: query.start.0,
            symbols: SymbolTable::new(),
            stacks: Vec::new(),
        };
        let Some(filter) = Self::filters(&table, query) else {
            return Ok(merged);
        };
        self.sum_by_stack(&table, Some(filter), query.start..query.end, &mut merged)
            .await?;
        if let Some(filter) = &query.stack_filter {
            merged.retain_stacks(filter);
        }
        Ok(merged)
    }

    /// Sums values by stack over the rows of `table` passing `filter` (within `time`), and
    /// resolves those stacks' symbols into `merged`.
    ///
    /// DataFusion plans the scan and the filters; [`SumByStackExec`] sums by stack id within
    /// each partition, in a map keyed by the id itself (already a strong hash): far cheaper than
    /// a generic GROUP BY on 16-byte binary keys. Its memory is reserved in the query pool. The
    /// period comes from block metadata and the buffer, not from a column read per sample.
    async fn sum_by_stack(
        &self,
        table: &Arc<SampleTable>,
        filter: Option<Expr>,
        time: std::ops::Range<Nanos>,
        merged: &mut MergedProfile,
    ) -> Result<()> {
        let (totals, period) = self.stack_totals(table, filter).await?;
        merged.period = period;
        self.resolve(table, time, &totals, merged).await
    }

    /// Sums by stack id over the rows of `table` passing `filter`, in stack-id order, and the
    /// largest sampling period among them.
    ///
    /// A block inside the time range that keeps stack sums is not scanned when the filter is
    /// decided series by series (every conjunct exact: time, profile type, delta, label
    /// equality): its sums of the series that pass are added instead. The rest is scanned.
    pub(crate) async fn stack_totals(
        &self,
        table: &Arc<SampleTable>,
        filter: Option<Expr>,
    ) -> Result<(Vec<(StackId, i64)>, i64)> {
        let selection = crate::table::scan_filter(filter.as_slice());
        let period = table.max_period(&selection);
        let per_series = filter.as_ref().is_none_or(crate::table::is_exact);
        // What each block's sums answer: all of a block inside the range, the slices the range
        // covers whole of one it cuts (its other rows are scanned).
        let mut parts: BTreeMap<BlockId, SummedPart> = BTreeMap::new();
        let mut reads: Vec<(BlockId, ByteRange)> = Vec::new();
        if per_series {
            for block in table
                .snapshot()
                .manifest
                .candidate_blocks(table.tenant(), &selection)
            {
                let tenant = &block.tenants[table.tenant()];
                if let (Some(range), Some(part)) =
                    (tenant.sums, tenant.summed_part(&selection.time))
                {
                    reads.push((block.id.clone(), range));
                    parts.insert(block.id.clone(), part);
                }
            }
        }
        let rest = table.without_parts(&selection, &parts);
        let mut sums = StackSums::default();
        let reservation =
            MemoryConsumer::new("firn stack merge").register(&self.runtime.memory_pool);
        let summed_blocks = reads.len() as u64;
        let mut loads = futures::stream::iter(reads.into_iter().map(|(block, range)| {
            let (cache, tenant) = (self.symbols.clone(), table.tenant().clone());
            async move {
                let (ids, sums) = futures::try_join!(
                    cache.stack_ids(&block),
                    cache.sums(&block, &tenant, range)
                )?;
                Ok::<_, Error>((block, ids, sums))
            }
        }))
        .buffered(SUMS_READ_CONCURRENCY);
        let add = async {
            while let Some((block, ids, block_sums)) = loads.try_next().await? {
                let slices = parts[&block].slices.clone();
                for series in block_sums.series.iter().filter(|s| s.passes(&selection)) {
                    let (ordinals, values) = series.entries(slices.clone());
                    sums.add_ordinals(&ids, ordinals, values)?;
                }
                reservation
                    .try_resize(sums.bytes())
                    .map_err(|e| self.map_err(e))?;
            }
            Ok::<(), Error>(())
        };
        tokio::time::timeout(self.config.timeout, add)
            .await
            .map_err(|_| Error::Timeout {
                seconds: self.config.timeout.as_secs(),
            })??;
        self.blocks_summed
            .fetch_add(summed_blocks, std::sync::atomic::Ordering::Relaxed);

        let mut df = self.frame(Arc::new(rest))?;
        if let Some(filter) = &filter {
            df = df.filter(filter.clone()).map_err(|e| self.map_err(e))?;
        }
        let df = df
            .select(vec![column(schema::STACK_ID), column(schema::VALUE)])
            .map_err(|e| self.map_err(e))?;
        let task = df.task_ctx();
        let plan = df
            .create_physical_plan()
            .await
            .map_err(|e| self.map_err(e))?;
        let plan: Arc<dyn ExecutionPlan> = Arc::new(SumByStackExec::new(plan));
        self.run(plan, Arc::new(task), |batch| {
            sums.add(batch.column(0), batch.column(1).as_primitive::<Int64Type>())?;
            reservation
                .try_resize(sums.bytes())
                .map_err(|e| self.map_err(e))
        })
        .await?;
        let mut totals: Vec<(StackId, i64)> = sums
            .finish()?
            .into_iter()
            .map(|(id, v)| (StackId(id), v))
            .collect();
        totals.sort_unstable();
        Ok((totals, period))
    }

    /// Blocks whose stack sums answered a merge instead of their rows, since the engine began.
    pub fn blocks_answered_by_sums(&self) -> u64 {
        self.blocks_summed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Copies the symbols of `totals` into `merged`: from the buffer first, then from blocks
    /// that may hold rows in `time`, until every stack is found.
    pub(crate) async fn resolve(
        &self,
        table: &SampleTable,
        time: std::ops::Range<Nanos>,
        totals: &[(StackId, i64)],
        merged: &mut MergedProfile,
    ) -> Result<()> {
        let mut missing: BTreeMap<StackId, i64> = totals.iter().copied().collect();
        let mut found: BTreeMap<StackId, (u32, i64)> = BTreeMap::new();
        {
            let buffer = table
                .snapshot()
                .buffer
                .symbols
                .read()
                .expect("symbol lock poisoned");
            take_stacks(&buffer, &mut missing, &mut found, &mut merged.symbols);
        }
        let scan = firn_storage::filter::ScanFilter {
            time,
            ..Default::default()
        };
        let blocks: Vec<BlockId> = table
            .snapshot()
            .manifest
            .candidate_blocks(table.tenant(), &scan)
            .map(|b| b.id.clone())
            .collect();
        for block in blocks {
            if missing.is_empty() {
                break;
            }
            let symbols = self.symbols.table(&block).await?;
            take_stacks(&symbols, &mut missing, &mut found, &mut merged.symbols);
        }
        if !missing.is_empty() {
            tracing::warn!(missing = missing.len(), "stacks without symbols");
        }
        merged.stacks = found.into_values().collect();
        Ok(())
    }

    pub async fn flamegraph(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
        max_nodes: usize,
    ) -> Result<FlameGraph> {
        Ok(FlameGraph::from_merged(
            &self.merge(tenant, query).await?,
            max_nodes,
        ))
    }

    /// Two selections in one flame graph.
    pub async fn diff(
        &self,
        tenant: &TenantId,
        left: &ProfileQuery,
        right: &ProfileQuery,
        max_nodes: usize,
    ) -> Result<FlameGraph> {
        let (l, r) = futures::try_join!(self.merge(tenant, left), self.merge(tenant, right))?;
        Ok(FlameGraph::diff(&l, &r, max_nodes))
    }

    /// Label names present on rows of the selection.
    pub async fn label_names(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
    ) -> Result<Vec<String>> {
        let table = self.table(tenant);
        let names = table.label_names();
        if names.is_empty() {
            return Ok(names);
        }
        let Some(filter) = Self::filters(&table, query) else {
            return Ok(Vec::new());
        };
        // Blocks whose every row is selected answer from their metadata; the rest are scanned
        // for the names still unseen.
        let mut present = BTreeSet::new();
        let table = Self::take_from_metadata(
            table,
            &filter,
            |_| true,
            |t| {
                present.extend(
                    t.labels
                        .iter()
                        .filter(|(_, l)| l.rows > 0)
                        .map(|(n, _)| n.clone()),
                )
            },
        );
        let unseen: Vec<&String> = names.iter().filter(|n| !present.contains(*n)).collect();
        if !unseen.is_empty() {
            let counts: Vec<Expr> = unseen
                .iter()
                .map(|n| count(column(&schema::label_column(n))).alias(n.as_str()))
                .collect();
            let df = self
                .frame(table)?
                .filter(filter)
                .and_then(|df| df.aggregate(vec![], counts))
                .map_err(|e| self.map_err(e))?;
            for batch in self.collect(df).await? {
                for (i, name) in unseen.iter().enumerate() {
                    if batch.num_rows() > 0
                        && batch.column(i).as_primitive::<Int64Type>().value(0) > 0
                    {
                        present.insert((*name).clone());
                    }
                }
            }
        }
        Ok(names.into_iter().filter(|n| present.contains(n)).collect())
    }

    /// Hands `take` the metadata of each block of `table` whose every row passes `filter` and
    /// that `answers` accepts, and returns the table of the blocks left to scan. Only when
    /// `filter` is all time, profile type, delta and label equalities can metadata decide it;
    /// otherwise every block is left.
    fn take_from_metadata(
        table: Arc<SampleTable>,
        filter: &Expr,
        answers: impl Fn(&TenantBlockMeta) -> bool,
        mut take: impl FnMut(&TenantBlockMeta),
    ) -> Arc<SampleTable> {
        if !crate::table::is_exact(filter) {
            return table;
        }
        let scan = crate::table::scan_filter(std::slice::from_ref(filter));
        let (answered, rest) = table.answered_by_metadata(&scan, answers);
        answered.into_iter().for_each(&mut take);
        Arc::new(rest)
    }

    /// Distinct values of a label on rows of the selection, sorted: the `page` of them.
    pub async fn label_values(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
        name: &str,
        page: &ValuePage,
    ) -> Result<Vec<String>> {
        let table = self.table(tenant);
        if !table.label_names().iter().any(|n| n == name) {
            return Ok(Vec::new());
        }
        let Some(filter) = Self::filters(&table, query) else {
            return Ok(Vec::new());
        };
        // Blocks whose every row is selected and that list the label's values answer from
        // their metadata; the others, and the buffer, are scanned.
        let mut values = BTreeSet::new();
        let table = Self::take_from_metadata(
            table,
            &filter,
            |t| t.labels.get(name).is_none_or(|l| l.values.is_some()),
            |t| {
                values.extend(
                    t.labels
                        .get(name)
                        .and_then(|l| l.values.clone())
                        .into_iter()
                        .flatten()
                        .filter(|v| page.follows(v)),
                )
            },
        );
        let label = datafusion::logical_expr::cast(
            column(&schema::label_column(name)),
            datafusion::arrow::datatypes::DataType::Utf8,
        );
        let mut filter = filter.and(label.clone().is_not_null());
        if let Some(after) = &page.after {
            filter = filter.and(label.clone().gt(lit(after.clone())));
        }
        if let Some(prefix) = page.prefix.as_deref().filter(|p| !p.is_empty()) {
            // The range first (row groups and pages prune by it), then the prefix itself.
            filter = filter.and(label.clone().gt_eq(lit(prefix.to_owned())));
            if let Some(past) = past_prefix(prefix) {
                filter = filter.and(label.clone().lt(lit(past)));
            }
            filter = filter.and(datafusion::functions::expr_fn::starts_with(
                label.clone(),
                lit(prefix.to_owned()),
            ));
        }
        let mut df = self
            .frame(table)?
            .filter(filter)
            .and_then(|df| df.aggregate(vec![label.alias("v")], vec![]))
            .map_err(|e| self.map_err(e))?;
        if let Some(limit) = page.limit {
            // The first `limit` in order: a top-k, not a sort of every value.
            df = df
                .sort(vec![column("v").sort(true, false)])
                .and_then(|df| df.limit(0, Some(limit)))
                .map_err(|e| self.map_err(e))?;
        }
        for batch in self.collect(df).await? {
            let c = batch.column(0).as_string::<i32>();
            values.extend((0..batch.num_rows()).map(|i| c.value(i).to_owned()));
        }
        Ok(page.cut(values))
    }

    /// Profile types with rows in `[start, end)`.
    pub async fn profile_types(
        &self,
        tenant: &TenantId,
        start: Nanos,
        end: Nanos,
    ) -> Result<Vec<ProfileType>> {
        let mut types: Vec<ProfileType> = self
            .profile_kinds(tenant, start, end)
            .await?
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        types.dedup();
        Ok(types)
    }

    /// Profile types with rows in `[start, end)`, each with whether those rows are delta
    /// profiles (a type may have both), sorted.
    pub async fn profile_kinds(
        &self,
        tenant: &TenantId,
        start: Nanos,
        end: Nanos,
    ) -> Result<Vec<(ProfileType, bool)>> {
        let table = self.table(tenant);
        let type_column = datafusion::logical_expr::cast(
            column(schema::PROFILE_TYPE),
            datafusion::arrow::datatypes::DataType::Utf8,
        );
        let df = self
            .frame(table)?
            .filter(
                column(schema::TIME)
                    .gt_eq(lit(start.0))
                    .and(column(schema::TIME).lt(lit(end.0))),
            )
            .and_then(|df| {
                df.aggregate(
                    vec![type_column.alias("t"), column(schema::DELTA).alias("d")],
                    vec![min(column(schema::TIME))],
                )
            })
            .map_err(|e| self.map_err(e))?;
        let mut kinds = Vec::new();
        for batch in self.collect(df).await? {
            let types = batch.column(0).as_string::<i32>();
            let deltas = batch.column(1).as_boolean();
            for i in 0..batch.num_rows() {
                kinds.push((ProfileType::parse(types.value(i))?, deltas.value(i)));
            }
        }
        kinds.sort();
        Ok(kinds)
    }

    /// Read-only SQL over the tenant's `samples` table. Statements other than queries are
    /// refused; results past `max_rows`, memory past the pool and time past the timeout fail.
    pub async fn sql(&self, tenant: &TenantId, sql: &str) -> Result<Vec<RecordBatch>> {
        let ctx = self.context();
        ctx.register_table("samples", self.table(tenant))
            .map_err(|e| self.map_err(e))?;
        // Held until the query ends: the `stacks` table's memory counts against the pool.
        let mut _stacks_memory = None;
        if crate::sql::mentions_stacks(sql) {
            let table = self.table(tenant);
            let mut merged = MergedProfile::empty(None);
            self.sum_by_stack(&table, None, Nanos::MIN..Nanos::MAX, &mut merged)
                .await?;
            let (stacks, reservation) =
                crate::sql::stacks_table(&merged, &self.runtime.memory_pool, |e| self.map_err(e))?;
            _stacks_memory = Some(reservation);
            ctx.register_batch("stacks", stacks)
                .map_err(|e| self.map_err(e))?;
        }
        let df = crate::sql::plan_read_only(&ctx, sql, self.config.max_rows, |e| self.map_err(e))
            .await?;
        let batches = self.collect(df).await?;
        crate::sql::check_rows(&batches, self.config.max_rows)?;
        Ok(batches)
    }
}

/// A column by its exact name: label columns contain a dot that `col()` would read as a
/// table qualifier.
pub(crate) fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Moves the stacks of `missing` that `source` holds into `found`, copying their symbols into
/// `target` in stack-id order (so the output's symbol order is deterministic).
fn take_stacks(
    source: &SymbolTable,
    missing: &mut BTreeMap<StackId, i64>,
    found: &mut BTreeMap<StackId, (u32, i64)>,
    target: &mut SymbolTable,
) {
    let present: Vec<(StackId, u32, i64)> = missing
        .iter()
        .filter_map(|(&id, &value)| source.stack_ref(id).map(|r| (id, r, value)))
        .collect();
    let copied = target.copy_stacks_from(source, present.iter().map(|p| p.1));
    for ((id, _, value), r) in present.into_iter().zip(copied) {
        missing.remove(&id);
        found.insert(id, (r, value));
    }
}

#[cfg(test)]
mod tests;
