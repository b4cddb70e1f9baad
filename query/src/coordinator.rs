//! The coordinator: answers profile queries and SQL over every shard of the data. It takes
//! each shard's read point, plans the exchange with DataFusion ([`ShardExchangeExec`]: one
//! partition per shard, each a [`Fragment`] run on a replica of that shard), and combines the
//! partial answers: the final sums by stack id, then the symbols of the surviving stacks only,
//! from the shard that reported each.
//!
//! ```text
//!  read points (each shard's read index) ─► ShardExchangeExec(MergeSums) ─► final sums
//!     ─► Symbols from each owning shard ─► MergedProfile ─► flame graph / pprof / top
//!  series ─► ShardExchangeExec(Series) ─► SeriesCombiner ─► sums or averages per step
//!  SQL ─► ClusterTable (TableProvider) ─► ShardExchangeExec(Scan) ─► DataFusion above it
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use firn_storage::symbols::{SymbolRef, SymbolTable, decode_symbols};
use firn_storage::{Nanos, ProfileType, ShardId, StackId, TenantId};
use futures::TryStreamExt;

use crate::cluster_table::ClusterTable;
use crate::engine::{ProfileQuery, QueryConfig, Series, SeriesOptions, ValuePage};
use crate::error::{Error, Result};
use crate::exchange::{ReadPoint, ShardExchangeExec, ShardSource};
use crate::flamegraph::FlameGraph;
use crate::fragment::{
    Fragment, FragmentOutput, PERIOD_KEY, QuerySpec, merge_sums_schema, series_schema,
};
use crate::hash::BuildIdHasher;
use crate::merged::MergedProfile;
use crate::series::{SeriesCombiner, check_steps};
use crate::tenant::{CappedPool, TenantLimits, TenantPolicy};

/// Answers queries over every shard a [`ShardSource`] reaches.
#[derive(Debug)]
pub struct Coordinator {
    source: Arc<dyn ShardSource>,
    config: QueryConfig,
    runtime: Arc<RuntimeEnv>,
    policy: Option<Arc<dyn TenantPolicy>>,
}

impl Coordinator {
    pub fn new(source: Arc<dyn ShardSource>, config: QueryConfig) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(config.memory_limit, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|source| Error::Execution { source })?;
        Ok(Self {
            source,
            config,
            runtime,
            policy: None,
        })
    }

    /// Applies each tenant's limits (retention, range, memory) to its queries.
    pub fn with_policy(mut self, policy: Arc<dyn TenantPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The tenant's limits.
    fn begin(&self, tenant: &TenantId) -> TenantLimits {
        match &self.policy {
            Some(p) => p.limits(tenant),
            None => TenantLimits::default(),
        }
    }

    /// The query as the tenant may run it (see [`TenantLimits::scope`]).
    fn scoped(limits: &TenantLimits, query: &ProfileQuery) -> Result<ProfileQuery> {
        let (start, end) = limits.scope(query.start, query.end)?;
        Ok(ProfileQuery {
            start,
            end,
            ..query.clone()
        })
    }

    /// The memory pool of one query of a tenant: its share of the coordinator's.
    fn pool(&self, limits: &TenantLimits) -> Arc<dyn MemoryPool> {
        match limits.memory_bytes {
            Some(cap) if cap < self.config.memory_limit => {
                Arc::new(CappedPool::new(self.runtime.memory_pool.clone(), cap))
            }
            _ => self.runtime.memory_pool.clone(),
        }
    }

    fn context(&self) -> SessionContext {
        let config = SessionConfig::new()
            .with_batch_size(8192)
            .with_information_schema(false);
        SessionContext::new_with_config_rt(config, self.runtime.clone())
    }

    /// A context for one SQL query, its memory drawn from `pool`.
    fn sql_context(&self, pool: Arc<dyn MemoryPool>) -> Result<SessionContext> {
        if Arc::ptr_eq(&pool, &self.runtime.memory_pool) {
            return Ok(self.context());
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|source| Error::Execution { source })?;
        let config = SessionConfig::new()
            .with_batch_size(8192)
            .with_information_schema(false);
        Ok(SessionContext::new_with_config_rt(config, runtime))
    }

    fn map_err(&self, e: datafusion::error::DataFusionError) -> Error {
        // A shard's own error travels inside DataFusion's: give it back as it was.
        let e = match e {
            datafusion::error::DataFusionError::External(inner) => {
                match inner.downcast::<Error>() {
                    Ok(ours) => return *ours,
                    Err(other) => datafusion::error::DataFusionError::External(other),
                }
            }
            other => other,
        };
        match e.find_root() {
            datafusion::error::DataFusionError::ResourcesExhausted(message) => Error::MemoryLimit {
                limit: self.config.memory_limit,
                message: message.clone(),
            },
            datafusion::error::DataFusionError::SQL(..)
            | datafusion::error::DataFusionError::Plan(..)
            | datafusion::error::DataFusionError::SchemaError(..) => {
                Error::InvalidQuery(e.find_root().to_string())
            }
            _ => Error::Execution { source: e },
        }
    }

    /// Runs `work` within the query timeout.
    async fn timed<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.config.timeout, work)
            .await
            .map_err(|_| Error::Timeout {
                seconds: self.config.timeout.as_secs(),
            })?
    }

    /// Each shard's answer to `fragment`, through the exchange plan (one partition a shard).
    async fn gather(
        &self,
        tenant: &TenantId,
        fragment: Fragment,
        points: Vec<ReadPoint>,
        schema: datafusion::arrow::datatypes::SchemaRef,
    ) -> Result<Vec<(ShardId, Vec<RecordBatch>)>> {
        let plan = Arc::new(ShardExchangeExec::new(
            self.source.clone(),
            tenant.clone(),
            fragment,
            points.clone(),
            schema,
        ));
        let task = self.context().task_ctx();
        let parts = points.iter().enumerate().map(|(i, point)| {
            let (plan, task) = (plan.clone(), task.clone());
            async move {
                let stream = plan.execute(i, task).map_err(|e| self.map_err(e))?;
                let batches: Vec<RecordBatch> =
                    stream.try_collect().await.map_err(|e| self.map_err(e))?;
                Ok::<_, Error>((point.shard, batches))
            }
        });
        futures::future::try_join_all(parts).await
    }

    /// Each shard's answer to a fragment of one text column, as one sorted set.
    async fn strings(&self, tenant: &TenantId, fragment: Fragment) -> Result<Vec<String>> {
        let points = self.source.read_points().await?;
        let outputs = futures::future::try_join_all(
            points
                .iter()
                .map(|p| self.source.execute(*p, tenant, &fragment)),
        )
        .await?;
        let mut set = BTreeSet::new();
        for out in outputs {
            set.extend(out.string_values()?);
        }
        Ok(set.into_iter().collect())
    }

    /// Sums values by stack over the selection on every shard, then resolves the symbols of
    /// the stacks that remain.
    pub async fn merge(&self, tenant: &TenantId, query: &ProfileQuery) -> Result<MergedProfile> {
        let limits = self.begin(tenant);
        self.merge_limited(tenant, query, &limits).await
    }

    async fn merge_limited(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
        limits: &TenantLimits,
    ) -> Result<MergedProfile> {
        let query = Self::scoped(limits, query)?;
        self.timed(self.merge_untimed(tenant, &query, &self.pool(limits)))
            .await
            .map_err(|e| self.name_tenant_memory(e, limits))
    }

    /// A memory error under a tenant's cap names the cap.
    fn name_tenant_memory(&self, e: Error, limits: &TenantLimits) -> Error {
        let cap = limits
            .memory_bytes
            .filter(|c| *c < self.config.memory_limit);
        match (e, cap) {
            (Error::MemoryLimit { message, .. }, Some(cap))
                if !message.contains("max_query_memory_bytes") =>
            {
                Error::MemoryLimit {
                    limit: cap,
                    message: format!("{message} (the tenant's max_query_memory_bytes = {cap})"),
                }
            }
            (e, _) => e,
        }
    }

    async fn merge_untimed(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<MergedProfile> {
        let mut merged = MergedProfile::empty(query.selector.profile_type.clone());
        merged.duration_nanos = query.end.0.saturating_sub(query.start.0);
        merged.time_nanos = query.start.0;
        let points = self.source.read_points().await?;
        let fragment = Fragment::MergeSums {
            query: QuerySpec::from(query),
        };
        let answers = self
            .gather(tenant, fragment, points.clone(), merge_sums_schema(0))
            .await?;
        // The final aggregate: sums by stack id, each stack remembering the first shard
        // that has it (to resolve its symbols there).
        let reservation = MemoryConsumer::new("firn coordinator merge").register(pool);
        let mut sums: HashMap<u128, (i64, ShardId), BuildIdHasher> = HashMap::default();
        for (shard, batches) in &answers {
            for batch in batches {
                if let Some(p) = batch.schema().metadata().get(PERIOD_KEY) {
                    merged.period = merged.period.max(p.parse().unwrap_or(0));
                }
                let ids = batch
                    .column(0)
                    .as_fixed_size_binary_opt()
                    .ok_or_else(|| Error::InvalidQuery("stack sums without stack ids".into()))?;
                let values = batch
                    .column(1)
                    .as_primitive_opt::<Int64Type>()
                    .ok_or_else(|| Error::InvalidQuery("stack sums without values".into()))?;
                for i in 0..batch.num_rows() {
                    let id = StackId::from_bytes(ids.value(i))
                        .ok_or_else(|| Error::InvalidQuery("a stack id is not 16 bytes".into()))?;
                    let entry = sums.entry(id.0).or_insert((0, *shard));
                    entry.0 = entry.0.saturating_add(values.value(i));
                }
                reservation
                    .try_resize(sums.capacity() * 40)
                    .map_err(|e| self.map_err(e))?;
            }
        }
        // Symbols only for stacks that survive the final sum, from the shard that has each.
        let mut by_shard: BTreeMap<ShardId, Vec<(StackId, i64)>> = BTreeMap::new();
        for (id, (value, shard)) in sums {
            if value != 0 {
                by_shard
                    .entry(shard)
                    .or_default()
                    .push((StackId(id), value));
            }
        }
        let point_of: HashMap<ShardId, ReadPoint> = points.iter().map(|p| (p.shard, *p)).collect();
        let lookups = by_shard.iter_mut().map(|(shard, stacks)| {
            stacks.sort_unstable();
            let fragment = Fragment::Symbols {
                stacks: stacks
                    .iter()
                    .map(|(id, _)| ((id.0 >> 64) as u64, id.0 as u64))
                    .collect(),
                start: query.start,
                end: query.end,
                plain: true,
            };
            let at = point_of.get(shard).copied().unwrap_or(ReadPoint {
                shard: *shard,
                applied: 0,
            });
            async move { self.source.execute(at, tenant, &fragment).await }
        });
        let tables = futures::future::try_join_all(lookups).await?;
        let mut found: BTreeMap<StackId, (SymbolRef, i64)> = BTreeMap::new();
        let mut missing = 0usize;
        let alone = by_shard.len() == 1;
        for ((_, stacks), table) in by_shard.iter().zip(tables) {
            let table = symbols_of(table, self.config.symbol_cache_bytes)?;
            let present: Vec<(StackId, SymbolRef, i64)> = stacks
                .iter()
                .filter_map(|(id, v)| table.stack_ref(*id).map(|r| (*id, r, *v)))
                .collect();
            missing += stacks.len() - present.len();
            if alone {
                // One shard's table holds the answer's stacks and no others: it is the
                // answer's table as it is.
                for (id, r, value) in present {
                    found.insert(id, (r, value));
                }
                merged.symbols = table;
                continue;
            }
            let copied = merged
                .symbols
                .copy_stacks_from(&table, present.iter().map(|p| p.1));
            for ((id, _, value), r) in present.into_iter().zip(copied) {
                found.insert(id, (r, value));
            }
        }
        if missing > 0 {
            tracing::warn!(missing, "stacks without symbols");
        }
        merged.stacks = found.into_values().collect();
        if let Some(filter) = &query.stack_filter {
            merged.retain_stacks(filter);
        }
        Ok(merged)
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
        let limits = self.begin(tenant);
        let (l, r) = futures::try_join!(
            self.merge_limited(tenant, left, &limits),
            self.merge_limited(tenant, right, &limits)
        )?;
        Ok(FlameGraph::diff(&l, &r, max_nodes))
    }

    /// Values per step, grouped by labels, optionally the top `limit` series by total.
    pub async fn series(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
        options: &SeriesOptions,
    ) -> Result<Vec<Series>> {
        let limits = self.begin(tenant);
        let query = &Self::scoped(&limits, query)?;
        check_steps(query, options.step)?;
        self.timed(async {
            let points = self.source.read_points().await?;
            let fragment = Fragment::Series {
                query: QuerySpec::from(query),
                step: options.step,
                group_by: options.group_by.clone(),
            };
            let answers = self
                .gather(tenant, fragment, points, series_schema(&options.group_by))
                .await?;
            let mut combiner = SeriesCombiner::new(&options.group_by);
            for (_, batches) in answers {
                for batch in batches {
                    combiner.add(&batch)?;
                }
            }
            Ok(combiner.finish(options))
        })
        .await
    }

    /// Label names present on rows of the selection, sorted.
    pub async fn label_names(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
    ) -> Result<Vec<String>> {
        let query = Self::scoped(&self.begin(tenant), query)?;
        self.timed(self.strings(
            tenant,
            Fragment::LabelNames {
                query: QuerySpec::from(&query),
            },
        ))
        .await
    }

    /// Distinct values of a label on rows of the selection, sorted.
    /// A label's values on the selection, sorted: the `page` of them (each shard sends its
    /// own page; the first `limit` of their union is the answer).
    pub async fn label_values(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
        name: &str,
        page: &ValuePage,
    ) -> Result<Vec<String>> {
        let query = Self::scoped(&self.begin(tenant), query)?;
        let values = self
            .timed(self.strings(
                tenant,
                Fragment::LabelValues {
                    query: QuerySpec::from(&query),
                    name: name.to_owned(),
                    page: page.clone(),
                },
            ))
            .await?;
        Ok(page.cut(values.into_iter().collect()))
    }

    /// Profile types with rows in `[start, end)`, sorted.
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
    /// profiles (Parca lists both kinds of a type), sorted.
    pub async fn profile_kinds(
        &self,
        tenant: &TenantId,
        start: Nanos,
        end: Nanos,
    ) -> Result<Vec<(ProfileType, bool)>> {
        let (start, end) = self.begin(tenant).scope(start, end)?;
        let ids = self
            .timed(self.strings(tenant, Fragment::ProfileTypes { start, end }))
            .await?;
        let mut kinds = ids
            .iter()
            .map(|id| crate::fragment::parse_kind(id))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::from)?;
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }

    /// Read-only SQL over the tenant's `samples` (and `stacks`) across every shard: rows come
    /// from the shards with the filters the scan understands applied there; DataFusion does
    /// the rest here.
    pub async fn sql(&self, tenant: &TenantId, sql: &str) -> Result<Vec<RecordBatch>> {
        let limits = self.begin(tenant);
        let pool = self.pool(&limits);
        self.timed(async {
            let points = self.source.read_points().await?;
            let labels = self.strings_at(tenant, Fragment::Columns, &points).await?;
            let ctx = self.sql_context(pool.clone())?;
            let table = ClusterTable::new(self.source.clone(), tenant.clone(), points, labels)
                .not_before(limits.not_before);
            ctx.register_table("samples", Arc::new(table))
                .map_err(|e| self.map_err(e))?;
            let mut _stacks_memory = None;
            if crate::sql::mentions_stacks(sql) {
                let everything = ProfileQuery {
                    selector: Default::default(),
                    start: limits.not_before.unwrap_or(Nanos::MIN),
                    end: Nanos::MAX,
                    stack_filter: None,
                    links: Default::default(),
                };
                let merged = self.merge_untimed(tenant, &everything, &pool).await?;
                let (stacks, reservation) =
                    crate::sql::stacks_table(&merged, &pool, |e| self.map_err(e))?;
                _stacks_memory = Some(reservation);
                ctx.register_batch("stacks", stacks)
                    .map_err(|e| self.map_err(e))?;
            }
            let df =
                crate::sql::plan_read_only(&ctx, sql, self.config.max_rows, |e| self.map_err(e))
                    .await?;
            let batches: Vec<RecordBatch> = df.collect().await.map_err(|e| self.map_err(e))?;
            crate::sql::check_rows(&batches, self.config.max_rows)?;
            Ok(batches)
        })
        .await
        .map_err(|e| self.name_tenant_memory(e, &limits))
    }

    /// [`Self::strings`] at given read points.
    async fn strings_at(
        &self,
        tenant: &TenantId,
        fragment: Fragment,
        points: &[ReadPoint],
    ) -> Result<Vec<String>> {
        let outputs = futures::future::try_join_all(
            points
                .iter()
                .map(|p| self.source.execute(*p, tenant, &fragment)),
        )
        .await?;
        let mut set = BTreeSet::new();
        for out in outputs {
            set.extend(out.string_values()?);
        }
        Ok(set.into_iter().collect())
    }
}

/// The symbol table a [`Fragment::Symbols`] answer carries: in process from this node, or
/// encoded from a peer.
fn symbols_of(out: FragmentOutput, max_bytes: usize) -> Result<SymbolTable> {
    if let Some(table) = out.symbols {
        return Ok(table);
    }
    let batch = out
        .batches
        .first()
        .ok_or_else(|| Error::InvalidQuery("a symbols answer without rows".into()))?;
    let bytes = batch
        .column(0)
        .as_binary_opt::<i32>()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::InvalidQuery("a symbols answer without symbols".into()))?;
    decode_symbols(bytes.value(0), max_bytes)
        .map_err(|reason| Error::InvalidQuery(format!("a shard's symbols are corrupt: {reason}")))
}
