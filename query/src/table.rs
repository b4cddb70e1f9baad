//! `SampleTable`: a DataFusion `TableProvider` over one tenant's sample rows in a store
//! snapshot — the unflushed buffer plus the Parquet blocks in object storage.
//!
//! ```text
//!  filters ──► ScanFilter (time, profile type, delta, label =/!=/=~/!~) ──► prune
//!     buffer: profile rows that may match ──► flat batches, chunk by chunk (BufferScanExec)
//!     blocks: manifest metadata ──► candidate blocks ──► this tenant's row groups only
//!             (ParquetAccessPlan) ──► ParquetSource with the filters as predicate
//!  └──────────────── UnionExec ────────────────┘  (filters re-applied above: Inexact)
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
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
use firn_storage::filter::{LabelMatcher, MatchOp, ScanFilter};
use firn_storage::paths::Paths;
use firn_storage::{Nanos, ReadSnapshot, TenantId, schema};

use crate::buffer_exec::BufferScanExec;

/// One tenant's samples.
#[derive(Debug)]
pub struct SampleTable {
    tenant: TenantId,
    snapshot: ReadSnapshot,
    paths: Paths,
    store_url: ObjectStoreUrl,
    schema: SchemaRef,
}

impl SampleTable {
    /// The table of `tenant`'s rows in `snapshot`; blocks are read through the object store
    /// registered under `store_url`.
    pub fn new(
        tenant: TenantId,
        snapshot: ReadSnapshot,
        paths: Paths,
        store_url: ObjectStoreUrl,
    ) -> Self {
        let mut names: BTreeSet<String> = snapshot.buffer.label_names(&tenant);
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
            schema,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn snapshot(&self) -> &ReadSnapshot {
        &self.snapshot
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
        // Used for pruning only; DataFusion still applies every filter to what the scan returns.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
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

        let files: Vec<PartitionedFile> = self
            .snapshot
            .manifest
            .candidate_blocks(&self.tenant, &filter)
            .map(|block| {
                let tenant = &block.tenants[&self.tenant];
                let mut plan = ParquetAccessPlan::new_none(block.row_groups);
                for rg in tenant.row_groups.0..tenant.row_groups.1 {
                    plan.scan(rg);
                }
                PartitionedFile::new(
                    self.paths.block_samples(&block.id).to_string(),
                    block.samples_bytes,
                )
                .with_extension(plan)
            })
            .collect();
        if !files.is_empty() {
            let df_schema = DFSchema::try_from(self.schema.clone())?;
            let predicate = conjunction(filters.to_vec())
                .map(|e| state.create_physical_expr(e, &df_schema))
                .transpose()?;
            let mut source = ParquetSource::new(self.schema.clone())
                .with_enable_page_index(true)
                .with_pushdown_filters(false)
                .with_reorder_filters(true);
            if let Some(predicate) = predicate {
                source = source.with_predicate(predicate);
            }
            let mut builder = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source));
            for file in files {
                builder = builder.with_file(file);
            }
            let config = builder
                .with_projection_indices(projection.cloned())?
                .build();
            parts.push(DataSourceExec::from_data_source(config));
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

/// Extracts the prunable predicates from a conjunction of filters; anything else is ignored
/// here (and still applied by DataFusion).
pub fn scan_filter(filters: &[Expr]) -> ScanFilter {
    let mut out = ScanFilter::default();
    let mut conjuncts = Vec::new();
    for f in filters {
        split_and(f, &mut conjuncts);
    }
    for e in conjuncts {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = e else {
            continue;
        };
        let (column, op, value) = match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), *op, v),
            (Expr::Literal(v, _), Expr::Column(c)) => match op.swap() {
                Some(op) => (c.name.as_str(), op, v),
                None => continue,
            },
            _ => continue,
        };
        match column {
            schema::TIME => {
                let Some(t) = as_i64(value) else { continue };
                match op {
                    Operator::GtEq => out.time.start = out.time.start.max(Nanos(t)),
                    Operator::Gt => out.time.start = out.time.start.max(Nanos(t.saturating_add(1))),
                    Operator::Lt => out.time.end = out.time.end.min(Nanos(t)),
                    Operator::LtEq => out.time.end = out.time.end.min(Nanos(t.saturating_add(1))),
                    Operator::Eq => {
                        out.time.start = out.time.start.max(Nanos(t));
                        out.time.end = out.time.end.min(Nanos(t.saturating_add(1)));
                    }
                    _ => {}
                }
            }
            schema::PROFILE_TYPE if op == Operator::Eq => {
                if let Some(s) = as_str(value) {
                    let keep: BTreeSet<String> = BTreeSet::from([s.to_owned()]);
                    out.profile_types = Some(match out.profile_types.take() {
                        Some(existing) => existing.intersection(&keep).cloned().collect(),
                        None => keep,
                    });
                }
            }
            schema::DELTA if op == Operator::Eq => {
                if let ScalarValue::Boolean(Some(b)) = value {
                    out.delta = Some(*b);
                }
            }
            other => {
                let (Some(name), Some(v)) = (schema::label_name(other), as_str(value)) else {
                    continue;
                };
                // `labels.x = 'v'` is false on null; as a matcher it must not match absent rows.
                let op = match op {
                    Operator::Eq if !v.is_empty() => MatchOp::Eq,
                    _ => continue,
                };
                if let Ok(m) = LabelMatcher::new(name, op, v) {
                    out.labels.push(m);
                }
            }
        }
    }
    out
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
