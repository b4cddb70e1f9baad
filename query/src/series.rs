//! Series: values per step, grouped by labels. A shard answers partial sums (per step and
//! group: the sum of each profile's total and how many profiles) that combine exactly across
//! shards, since a profile's rows never span shards; [`SeriesCombiner`] turns them into sums
//! or averages per step.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::prelude::{Expr, lit};
use firn_storage::{Nanos, TenantId, schema};

use crate::engine::{
    Aggregation, LabelPairs, ProfileQuery, QueryEngine, Series, SeriesOptions, column,
};
use crate::error::{Error, Result};

/// Steps a series query may ask for at most.
pub const MAX_STEPS: i64 = 11_000;

/// Checks a series query's step against its range.
pub fn check_steps(query: &ProfileQuery, step: Nanos) -> Result<()> {
    if step.0 <= 0 {
        return Err(Error::InvalidQuery("step must be positive".into()));
    }
    let steps = query
        .end
        .0
        .checked_sub(query.start.0)
        .ok_or_else(|| Error::InvalidQuery("time range is too long".into()))?
        / step.0;
    if steps > MAX_STEPS {
        return Err(Error::InvalidQuery(format!(
            "{steps} steps requested, the limit is {MAX_STEPS}; use a larger step"
        )));
    }
    Ok(())
}

impl QueryEngine {
    /// Values per step, grouped by labels, optionally the top `limit` series by total.
    pub async fn series(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
        options: &SeriesOptions,
    ) -> Result<Vec<Series>> {
        check_steps(query, options.step)?;
        let mut combiner = SeriesCombiner::new(&options.group_by);
        for batch in self
            .series_partial(tenant, query, options.step, &options.group_by)
            .await?
        {
            combiner.add(&batch)?;
        }
        Ok(combiner.finish(options))
    }

    /// Per step and group: the sum of each selected profile's total and the number of
    /// profiles, in [`crate::fragment::series_schema`]. Groups this store has no column for
    /// are null.
    pub async fn series_partial(
        &self,
        tenant: &TenantId,
        query: &ProfileQuery,
        step: Nanos,
        group_by: &[String],
    ) -> Result<Vec<RecordBatch>> {
        check_steps(query, step)?;
        let table = self.table(tenant);
        let names = table.label_names();
        let Some(filter) = Self::filters(&table, query) else {
            return Ok(Vec::new());
        };
        let bucket = ((column(schema::TIME) - lit(query.start.0)) / lit(step.0)) * lit(step.0)
            + lit(query.start.0);
        let group = |g: &String| -> Expr {
            let value = if names.contains(g) {
                datafusion::logical_expr::cast(column(&schema::label_column(g)), DataType::Utf8)
            } else {
                datafusion::logical_expr::cast(
                    lit(datafusion::common::ScalarValue::Null),
                    DataType::Utf8,
                )
            };
            value.alias(format!("group.{g}"))
        };
        // Per profile (series and time) first, then per step: sums and profile counts.
        let mut per_profile = vec![
            bucket.alias("bucket"),
            column(schema::SERIES_ID),
            column(schema::TIME),
        ];
        per_profile.extend(group_by.iter().map(group));
        let mut per_step = vec![column("bucket")];
        per_step.extend(group_by.iter().map(|g| column(&format!("group.{g}"))));
        let df = self
            .frame(table.clone())?
            .filter(filter)
            .and_then(|df| df.aggregate(per_profile, vec![sum(column(schema::VALUE)).alias("v")]))
            .and_then(|df| {
                df.aggregate(
                    per_step,
                    vec![
                        sum(column("v")).alias("sum"),
                        count(column("v")).alias("profiles"),
                    ],
                )
            })
            .map_err(|e| self.map_err(e))?;
        let target = crate::fragment::series_schema(group_by);
        let mut out = Vec::new();
        self.for_each_batch(df, |batch| {
            out.push(
                RecordBatch::try_new(target.clone(), batch.columns().to_vec())
                    .map_err(|e| Error::Execution { source: e.into() })?,
            );
            Ok(())
        })
        .await?;
        Ok(out)
    }
}

/// Folds partial series (from one shard or many) into series.
#[derive(Debug)]
pub struct SeriesCombiner {
    groups: Vec<String>,
    /// Per label set, per step: (sum, profiles).
    sums: BTreeMap<LabelPairs, BTreeMap<i64, (i64, i64)>>,
}

impl SeriesCombiner {
    pub fn new(group_by: &[String]) -> Self {
        Self {
            groups: group_by.to_vec(),
            sums: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let bad =
            |what: &str| Error::InvalidQuery(format!("a partial series has a bad {what} column"));
        if batch.num_columns() != self.groups.len() + 3 {
            return Err(bad("shape of"));
        }
        let buckets = batch
            .column(0)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad("bucket"))?;
        let n = self.groups.len();
        let sums = batch
            .column(n + 1)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad("sum"))?;
        let counts = batch
            .column(n + 2)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| bad("profiles"))?;
        let groups: Vec<_> = (0..n)
            .map(|g| {
                batch
                    .column(1 + g)
                    .as_string_opt::<i32>()
                    .ok_or_else(|| bad("group"))
            })
            .collect::<Result<_>>()?;
        for i in 0..batch.num_rows() {
            let labels: LabelPairs = groups
                .iter()
                .zip(&self.groups)
                .filter(|(c, _)| !c.is_null(i))
                .map(|(c, name)| (name.clone(), c.value(i).to_owned()))
                .collect();
            let point = self
                .sums
                .entry(labels)
                .or_default()
                .entry(buckets.value(i))
                .or_default();
            if !sums.is_null(i) {
                point.0 = point.0.saturating_add(sums.value(i));
            }
            point.1 += counts.value(i);
        }
        Ok(())
    }

    pub fn finish(self, options: &SeriesOptions) -> Vec<Series> {
        let mut out: Vec<Series> = self
            .sums
            .into_iter()
            .map(|(labels, points)| Series {
                labels,
                profiles: points
                    .values()
                    .map(|&(_, profiles)| profiles as u64)
                    .collect(),
                points: points
                    .into_iter()
                    .map(|(bucket, (sum, profiles))| {
                        let value = match options.aggregation {
                            Aggregation::Sum => sum as f64,
                            Aggregation::Average => sum as f64 / profiles.max(1) as f64,
                        };
                        (Nanos(bucket), value)
                    })
                    .collect(),
            })
            .collect();
        if let Some(limit) = options.limit {
            let total = |s: &Series| s.points.iter().map(|p| p.1).sum::<f64>();
            out.sort_by(|a, b| {
                total(b)
                    .total_cmp(&total(a))
                    .then_with(|| a.labels.cmp(&b.labels))
            });
            out.truncate(limit);
        }
        out
    }
}
