//! `SampleTable`: a DataFusion `TableProvider` over one tenant's sample rows in a store
//! snapshot — the unflushed buffer plus the Parquet blocks in object storage.
//!
//! ```text
//!  filters ──► ScanFilter (time, profile type, delta, label =/!=/=~/!~) ──► prune
//!     buffer: profile rows that may match ──► flat batches, chunk by chunk (BufferScanExec)
//!     blocks: manifest metadata ──► candidate blocks ──► this tenant's row groups only
//!             (ParquetAccessPlan) ──► ParquetSource with the filters as predicate
//!             (page pruning only) ──► BlockScanExec: stack steps decoded, then the row
//!             filter's conjuncts the block's metadata cannot prove for all rows, then
//!             stack ordinals become stack ids
//!  └──────────────── UnionExec ────────────────┘
//! ```
//!
//! Filters the scan understands (time ranges, profile type, delta, label equality) are pushed
//! down as Exact: both halves apply them exactly, so DataFusion does not evaluate them again.
//! Anything else is Inexact and DataFusion filters above the scan.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, project_schema};
use firn_storage::BlockId;
use firn_storage::block::{BlockMeta, SummedPart, TenantBlockMeta};
use firn_storage::filter::{LabelMatcher, MatchOp, ScanFilter};
use firn_storage::manifest::Manifest;
use firn_storage::paths::Paths;
use firn_storage::{Nanos, ReadSnapshot, TenantId, schema};

use crate::block_exec::{BlockScan, BlockScanExec};
use crate::buffer_exec::BufferScanExec;
use crate::engine::column;
use crate::symbol_cache::SymbolCache;
use datafusion::prelude::lit;

/// One tenant's samples.
#[derive(Debug)]
pub struct SampleTable {
    tenant: TenantId,
    snapshot: ReadSnapshot,
    paths: Paths,
    store_url: ObjectStoreUrl,
    symbols: Arc<SymbolCache>,
    schema: SchemaRef,
    /// Rows of blocks answered elsewhere (by stack sums): a scan of the block skips this time.
    answered: Arc<BTreeMap<BlockId, Range<Nanos>>>,
}

impl SampleTable {
    /// The table of `tenant`'s rows in `snapshot`; blocks are read through the object store
    /// registered under `store_url`, their symbols through `symbols`. Its label columns are
    /// the labels the rows have, and `extra` (null on every row that lacks them).
    pub fn new(
        tenant: TenantId,
        snapshot: ReadSnapshot,
        paths: Paths,
        store_url: ObjectStoreUrl,
        symbols: Arc<SymbolCache>,
        extra: &BTreeSet<String>,
    ) -> Self {
        let mut names: BTreeSet<String> = snapshot.buffer.label_names(&tenant);
        names.extend(extra.iter().cloned());
        for block in &snapshot.manifest.blocks {
            if let Some(t) = block.tenants.get(&tenant) {
                names.extend(t.labels.keys().cloned());
            }
        }
        let schema = schema::sample_schema(names.iter().map(String::as_str), false);
        Self {
            tenant,
            snapshot,
            paths,
            store_url,
            symbols,
            schema,
            answered: Arc::default(),
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn snapshot(&self) -> &ReadSnapshot {
        &self.snapshot
    }

    /// The largest sampling period among rows that may pass `filter`.
    pub fn max_period(&self, filter: &ScanFilter) -> i64 {
        let blocks = self
            .snapshot
            .manifest
            .candidate_blocks(&self.tenant, filter)
            .map(|b| b.tenants[&self.tenant].max_period(filter));
        blocks
            .chain([self.snapshot.buffer.max_period(&self.tenant, filter)])
            .max()
            .unwrap_or(0)
    }

    /// The metadata of each candidate block for `filter` every row of which passes it (so
    /// `answers` may take the block's part from its metadata), and this table without the
    /// blocks `answers` took, for the rest to be scanned. `filter` must be the whole selection.
    pub fn answered_by_metadata<'a>(
        &'a self,
        filter: &'a ScanFilter,
        answers: impl Fn(&TenantBlockMeta) -> bool,
    ) -> (Vec<&'a TenantBlockMeta>, SampleTable) {
        let (taken, rest) = self.split_blocks(filter, |t| t.all_match(filter) && answers(t));
        (taken.into_iter().map(|(_, t)| t).collect(), rest)
    }

    /// The candidate blocks for `filter` that `take` takes (with this tenant's part of their
    /// metadata), and this table without them, for the rest to be scanned.
    pub fn split_blocks<'a>(
        &'a self,
        filter: &'a ScanFilter,
        take: impl Fn(&TenantBlockMeta) -> bool,
    ) -> (Vec<(&'a BlockMeta, &'a TenantBlockMeta)>, SampleTable) {
        let (taken, kept): (Vec<_>, Vec<_>) = self
            .snapshot
            .manifest
            .candidate_blocks(&self.tenant, filter)
            .map(|block| (block, &block.tenants[&self.tenant]))
            .partition(|(_, tenant)| take(tenant));
        let rest = self.with_blocks(
            kept.into_iter().map(|(b, _)| b.clone()).collect(),
            BTreeMap::new(),
        );
        (taken, rest)
    }

    /// This table without the rows `parts` answer (each a candidate block's part, by its id,
    /// for `filter`): a block answered whole is left out, the others are scanned outside the
    /// time of their part.
    pub fn without_parts(
        &self,
        filter: &ScanFilter,
        parts: &BTreeMap<BlockId, SummedPart>,
    ) -> SampleTable {
        let blocks = self
            .snapshot
            .manifest
            .candidate_blocks(&self.tenant, filter)
            .filter(|b| parts.get(&b.id).is_none_or(|p| !p.whole))
            .cloned()
            .collect();
        let answered = parts
            .iter()
            .filter(|(_, p)| !p.whole)
            .map(|(id, p)| (id.clone(), p.time.clone()))
            .collect();
        self.with_blocks(blocks, answered)
    }

    /// This table over `blocks` (and the buffer) only, `answered` skipped in them.
    fn with_blocks(
        &self,
        blocks: Vec<BlockMeta>,
        answered: BTreeMap<BlockId, Range<Nanos>>,
    ) -> SampleTable {
        let manifest = Manifest {
            version: self.snapshot.manifest.version,
            flushed_seq: self.snapshot.manifest.flushed_seq,
            blocks,
            retired: Vec::new(),
        };
        SampleTable {
            tenant: self.tenant.clone(),
            snapshot: ReadSnapshot {
                buffer: self.snapshot.buffer.clone(),
                manifest: Arc::new(manifest),
            },
            paths: self.paths.clone(),
            store_url: self.store_url.clone(),
            symbols: self.symbols.clone(),
            schema: self.schema.clone(),
            answered: Arc::new(answered),
        }
    }

    /// Label names with a column in this table.
    pub fn label_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .filter_map(|f| schema::label_name(f.name()).map(str::to_owned))
            .collect()
    }
}

#[async_trait]
impl TableProvider for SampleTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if capture(f, &mut ScanFilter::default()) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let filter = scan_filter(filters);
        let mut parts: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        let buffer = BufferScanExec::new(
            &self.tenant,
            self.snapshot.buffer.clone(),
            filter.clone(),
            project_schema(&self.schema, projection)?,
        );
        if !buffer.is_empty() {
            parts.push(Arc::new(buffer));
        }

        let blocks = self.block_scans(state, projection, filters, &filter)?;
        if !blocks.is_empty() {
            parts.push(Arc::new(BlockScanExec::new(
                blocks,
                self.symbols.clone(),
                project_schema(&self.schema, projection)?,
                state.config().target_partitions(),
            )));
        }

        if parts.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(
                &self.schema,
                projection,
            )?)));
        }
        UnionExec::try_new(parts)
    }
}

impl SampleTable {
    /// A plan per row group of this tenant, of the profile types kept, in each candidate block:
    /// the Parquet scan with the filters as a pruning predicate, and a row filter of the
    /// filters the scan claimed as Exact that the block's metadata cannot prove for every row.
    fn block_scans(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        filter: &ScanFilter,
    ) -> datafusion::error::Result<Vec<BlockScan>> {
        let file_schema = schema::block_file_schema(&self.schema);
        let file_columns = DFSchema::try_from(file_schema.clone())?;
        // Neither a stack id nor a series id is a column of the file (ordinals stand for the
        // one, the labels give the other), so no filter on them can prune pages.
        let derived = |e: &Expr| {
            e.column_refs()
                .iter()
                .any(|c| c.name == schema::STACK_ID || c.name == schema::SERIES_ID)
        };
        let prunable: Vec<Expr> = filters.iter().filter(|e| !derived(e)).cloned().collect();
        let predicate = conjunction(prunable.clone())
            .map(|e| state.create_physical_expr(e, &file_columns))
            .transpose()?;
        // The filters the scan applies exactly, each with what it says alone, so a block's
        // metadata can prove it for every row.
        let exact: Vec<(Expr, ScanFilter)> = filters
            .iter()
            .filter_map(|f| {
                let mut alone = ScanFilter::default();
                capture(f, &mut alone).then(|| (f.clone(), alone))
            })
            .collect();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // A projected series id is recomputed from every label column, so they are all read.
        let series_index = wanted
            .iter()
            .position(|&i| self.schema.field(i).name() == schema::SERIES_ID);
        let mut with_labels = wanted.clone();
        if series_index.is_some() {
            for (i, field) in file_schema.fields().iter().enumerate() {
                if schema::label_name(field.name()).is_some() && !with_labels.contains(&i) {
                    with_labels.push(i);
                }
            }
        }

        let mut scans = Vec::new();
        // Footers and page indexes are read once per block and kept in the runtime's bounded
        // metadata cache (blocks never change under an id).
        let runtime = state.runtime_env();
        let readers: Arc<dyn ParquetFileReaderFactory> =
            Arc::new(CachedParquetFileReaderFactory::new(
                runtime.object_store(&self.store_url)?,
                runtime.cache_manager.get_file_metadata_cache(),
            ));
        for block in self
            .snapshot
            .manifest
            .candidate_blocks(&self.tenant, filter)
        {
            let tenant = &block.tenants[&self.tenant];
            // Rows answered elsewhere are skipped: by pages, then row by row.
            let skip = self.answered.get(&block.id).map(|t| {
                column(schema::TIME)
                    .lt(lit(t.start.0))
                    .or(column(schema::TIME).gt_eq(lit(t.end.0)))
            });
            let predicate = match &skip {
                None => predicate.clone(),
                Some(skip) => conjunction(prunable.iter().cloned().chain([skip.clone()]))
                    .map(|e| state.create_physical_expr(e, &file_columns))
                    .transpose()?,
            };
            // Only the filters the block's metadata cannot prove for every row (in a block
            // inside the time range, the service's rows need no time comparison); none when it
            // proves them all. Only the row groups of the profile types the filter keeps are
            // read, so only their rows need proof.
            let scanned =
                |pt: &str| tenant.type_row_groups.is_empty() || filter.keeps_profile_type(pt);
            let row_filter = conjunction(
                exact
                    .iter()
                    .filter(|(_, alone)| !tenant.all_match_of(alone, scanned))
                    .map(|(e, _)| e.clone())
                    .chain(skip)
                    .collect::<Vec<Expr>>(),
            );
            // Columns read: the projection (and the labels of a series id), plus what the row
            // filter needs.
            let mut read = with_labels.clone();
            if let Some(f) = &row_filter {
                for c in f.column_refs() {
                    let i = file_schema.index_of(&c.name)?;
                    if !read.contains(&i) {
                        read.push(i);
                    }
                }
            }
            let read_schema = DFSchema::try_from(Arc::new(file_schema.project(&read)?))?;
            let row_filter = row_filter
                .map(|f| state.create_physical_expr(f, &read_schema))
                .transpose()?;
            // One unit of work per row group, so partitions share the work evenly.
            for rg in tenant.row_groups_for(filter) {
                let mut access = ParquetAccessPlan::new_none(block.row_groups);
                access.scan(rg);
                let file = PartitionedFile::new(
                    self.paths.block_samples(&block.id).to_string(),
                    block.samples_bytes,
                )
                .with_extension(access);
                let mut source = ParquetSource::new(file_schema.clone())
                    .with_parquet_file_reader_factory(readers.clone())
                    .with_enable_page_index(true)
                    // Never row by row in the reader: a stack step needs the row before it, so
                    // the reader may skip whole pages (each starts on a restart) and no more.
                    .with_pushdown_filters(false);
                if let Some(predicate) = &predicate {
                    source = source.with_predicate(predicate.clone());
                }
                let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
                    .with_file(file)
                    .with_projection_indices(Some(read.clone()))?
                    .build();
                let plan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
                scans.push(BlockScan {
                    block: block.id.clone(),
                    stack: block.stack,
                    plan,
                    row_filter: row_filter.clone(),
                    columns: wanted.len(),
                    series_index,
                });
            }
        }
        Ok(scans)
    }
}

/// The prunable predicates of a conjunction of filters, as a [`ScanFilter`].
pub fn scan_filter(filters: &[Expr]) -> ScanFilter {
    let mut out = ScanFilter::default();
    for f in filters {
        capture(f, &mut out);
    }
    out
}

/// Whether the scan applies `filter` exactly: every conjunct is a time comparison, profile type
/// or delta equality, or a non-empty label equality.
pub fn is_exact(filter: &Expr) -> bool {
    capture(filter, &mut ScanFilter::default())
}

/// Adds what `filter` says to `out`; true when `out` now expresses all of it exactly (every
/// conjunct is a time comparison, profile type or delta equality, or a non-empty label
/// equality), false when part of it must still be evaluated row by row.
fn capture(filter: &Expr, out: &mut ScanFilter) -> bool {
    let mut conjuncts = Vec::new();
    split_and(filter, &mut conjuncts);
    let mut exact = true;
    for e in conjuncts {
        exact &= capture_one(e, out);
    }
    exact
}

fn capture_one(e: &Expr, out: &mut ScanFilter) -> bool {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
        return false;
    };
    let (column, op, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), *op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => match op.swap() {
            Some(op) => (c.name.as_str(), op, v),
            None => return false,
        },
        _ => return false,
    };
    match column {
        schema::TIME => {
            let Some(t) = as_i64(value) else {
                return false;
            };
            match op {
                Operator::GtEq => out.time.start = out.time.start.max(Nanos(t)),
                Operator::Gt => out.time.start = out.time.start.max(Nanos(t.saturating_add(1))),
                Operator::Lt => out.time.end = out.time.end.min(Nanos(t)),
                Operator::LtEq => out.time.end = out.time.end.min(Nanos(t.saturating_add(1))),
                Operator::Eq => {
                    out.time.start = out.time.start.max(Nanos(t));
                    out.time.end = out.time.end.min(Nanos(t.saturating_add(1)));
                }
                _ => return false,
            }
            // `t + 1` saturates at i64::MAX, where the half-open range would drop the row at
            // i64::MAX: leave that edge to DataFusion.
            matches!(op, Operator::GtEq | Operator::Lt) || t != i64::MAX
        }
        schema::PROFILE_TYPE if op == Operator::Eq => {
            let Some(s) = as_str(value) else {
                return false;
            };
            let keep: BTreeSet<String> = BTreeSet::from([s.to_owned()]);
            out.profile_types = Some(match out.profile_types.take() {
                Some(existing) => existing.intersection(&keep).cloned().collect(),
                None => keep,
            });
            true
        }
        schema::DELTA if op == Operator::Eq => match value {
            ScalarValue::Boolean(Some(b)) => {
                if out.delta.is_some_and(|d| d != *b) {
                    // `delta = true AND delta = false`: nothing passes.
                    out.time.end = out.time.start;
                }
                out.delta = Some(*b);
                true
            }
            _ => false,
        },
        other => {
            let (Some(name), Some(v)) = (schema::label_name(other), as_str(value)) else {
                return false;
            };
            // `labels.x = 'v'` is false on null; as a matcher it must not match absent rows.
            if op != Operator::Eq || v.is_empty() {
                return false;
            }
            match LabelMatcher::new(name, MatchOp::Eq, v) {
                Ok(m) => {
                    out.labels.push(m);
                    true
                }
                Err(_) => false,
            }
        }
    }
}

fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

fn as_i64(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(Some(x)) => Some(*x),
        ScalarValue::Int32(Some(x)) => Some(i64::from(*x)),
        ScalarValue::UInt64(Some(x)) => i64::try_from(*x).ok(),
        _ => None,
    }
}

fn as_str(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        ScalarValue::Dictionary(_, inner) => as_str(inner),
        _ => None,
    }
}
