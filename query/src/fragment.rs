//! Fragments: the part of a query that runs on one shard, next to its data, and answers with
//! small Arrow batches a coordinator combines ([`crate::coordinator`]). Each is a partial
//! aggregate whose combination is exact: sums by stack id, sums and profile counts by series
//! step, sets of names and values. A fragment is plain data (serde), so it travels as a ticket.
//!
//! ```text
//!  MergeSums    ─► (stack_id, value)            metadata: the largest sampling period
//!  Symbols      ─► one row: the stacks' symbols (the block symbol-file encoding)
//!  Series       ─► (bucket, group labels..., sum, profiles)
//!  LabelNames / LabelValues / ProfileTypes / Columns ─► one Utf8 column
//!  Scan         ─► sample rows, projected and filtered (SQL)
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, FixedSizeBinaryBuilder, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::prelude::{Expr, lit};
use firn_storage::filter::{LabelMatcher, MatchOp, ScanFilter};
use firn_storage::symbols::SymbolTable;
use firn_storage::{Nanos, ProfileType, StackId, TenantId, schema};
use serde::{Deserialize, Serialize};

use crate::engine::{LinkSelector, ProfileQuery, QueryEngine, column};
use crate::error::{Error, Result};
use crate::merged::MergedProfile;
use crate::selector::Selector;

/// Schema metadata key of [`Fragment::MergeSums`] output: the largest sampling period.
pub const PERIOD_KEY: &str = "firn.period";

/// A label matcher as data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatcherSpec {
    pub name: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: String,
    pub value: String,
}

/// A selection as data: what [`ProfileQuery`] holds, less the stack filter (applied by the
/// coordinator after the merge).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuerySpec {
    pub profile_type: Option<String>,
    pub delta: Option<bool>,
    pub matchers: Vec<MatcherSpec>,
    pub start: Nanos,
    pub end: Nanos,
    #[serde(default, skip_serializing_if = "LinkSelector::is_empty")]
    pub links: LinkSelector,
}

fn op_str(op: MatchOp) -> &'static str {
    match op {
        MatchOp::Eq => "=",
        MatchOp::NotEq => "!=",
        MatchOp::Re => "=~",
        MatchOp::NotRe => "!~",
    }
}

fn matcher(spec: &MatcherSpec) -> Result<LabelMatcher> {
    let op = match spec.op.as_str() {
        "=" => MatchOp::Eq,
        "!=" => MatchOp::NotEq,
        "=~" => MatchOp::Re,
        "!~" => MatchOp::NotRe,
        other => return Err(Error::InvalidQuery(format!("unknown matcher op {other:?}"))),
    };
    LabelMatcher::new(&spec.name, op, &spec.value)
        .map_err(|e| Error::InvalidQuery(format!("matcher on {}: {e}", spec.name)))
}

fn matcher_spec(m: &LabelMatcher) -> MatcherSpec {
    MatcherSpec {
        name: m.name.clone(),
        op: op_str(m.op).to_owned(),
        value: m.value.clone(),
    }
}

impl From<&ProfileQuery> for QuerySpec {
    fn from(q: &ProfileQuery) -> Self {
        Self {
            profile_type: q.selector.profile_type.as_ref().map(ProfileType::id),
            delta: q.selector.delta,
            matchers: q.selector.matchers.iter().map(matcher_spec).collect(),
            start: q.start,
            end: q.end,
            links: q.links.clone(),
        }
    }
}

impl QuerySpec {
    pub fn to_query(&self) -> Result<ProfileQuery> {
        Ok(ProfileQuery {
            selector: Selector {
                profile_type: self
                    .profile_type
                    .as_deref()
                    .map(ProfileType::parse)
                    .transpose()?,
                delta: self.delta,
                matchers: self.matchers.iter().map(matcher).collect::<Result<_>>()?,
            },
            start: self.start,
            end: self.end,
            stack_filter: None,
            links: self.links.clone(),
        })
    }
}

/// What a scan may skip, as data: the part of a SQL query's filters a shard applies exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanSpec {
    pub start: Nanos,
    pub end: Nanos,
    pub profile_types: Option<Vec<String>>,
    pub delta: Option<bool>,
    pub labels: Vec<MatcherSpec>,
}

impl From<&ScanFilter> for ScanSpec {
    fn from(f: &ScanFilter) -> Self {
        Self {
            start: f.time.start,
            end: f.time.end,
            profile_types: f
                .profile_types
                .as_ref()
                .map(|s| s.iter().cloned().collect()),
            delta: f.delta,
            labels: f.labels.iter().map(matcher_spec).collect(),
        }
    }
}

impl ScanSpec {
    /// The filter as expressions a [`crate::table::SampleTable`] takes as exact again.
    fn exprs(&self) -> Result<Vec<Expr>> {
        let mut out = Vec::new();
        if self.start != Nanos::MIN {
            out.push(column(schema::TIME).gt_eq(lit(self.start.0)));
        }
        if self.end != Nanos::MAX {
            out.push(column(schema::TIME).lt(lit(self.end.0)));
        }
        match self.profile_types.as_deref() {
            None => {}
            Some([one]) => out.push(column(schema::PROFILE_TYPE).eq(lit(one.clone()))),
            // No type passes (`a = x AND a = y`), or several do (never captured as one).
            Some([]) => out.push(lit(false)),
            Some(many) => out.push(
                column(schema::PROFILE_TYPE)
                    .in_list(many.iter().map(|t| lit(t.clone())).collect(), false),
            ),
        }
        if let Some(d) = self.delta {
            out.push(column(schema::DELTA).eq(lit(d)));
        }
        for m in &self.labels {
            let m = matcher(m)?;
            if m.op != MatchOp::Eq || m.value.is_empty() {
                return Err(Error::InvalidQuery(format!(
                    "scan filters hold only label equalities, not {} {} {:?}",
                    m.name,
                    op_str(m.op),
                    m.value
                )));
            }
            out.push(column(&schema::label_column(&m.name)).eq(lit(m.value.clone())));
        }
        Ok(out)
    }
}

/// The part of a query one shard runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fragment {
    /// Sums of value by stack id over the selection.
    MergeSums {
        query: QuerySpec,
    },
    /// The symbols of these stacks (ids as high and low 64 bits), looked up in the buffer and
    /// the blocks that may hold rows in `[start, end)`.
    Symbols {
        stacks: Vec<(u64, u64)>,
        start: Nanos,
        end: Nanos,
        /// Answer in the uncompressed form with every stack id
        /// ([`firn_storage::symbols::encode_symbols_for_answer`]); a peer that predates it
        /// asks for the stored form.
        #[serde(default)]
        plain: bool,
    },
    /// Per step and group: the sum of each profile's total, and how many profiles.
    Series {
        query: QuerySpec,
        step: Nanos,
        group_by: Vec<String>,
    },
    LabelNames {
        query: QuerySpec,
    },
    LabelValues {
        query: QuerySpec,
        name: String,
        /// Which of them (all, from a peer that predates pages).
        #[serde(default)]
        page: crate::engine::ValuePage,
    },
    /// Profile type ids, with a `:delta` suffix for delta rows (a type may have both).
    ProfileTypes {
        start: Nanos,
        end: Nanos,
    },
    /// The label names the tenant's rows have (the columns of its table).
    Columns,
    /// Sample rows: `columns` of the table with `labels` as its label columns, filtered.
    Scan {
        columns: Vec<String>,
        labels: Vec<String>,
        filter: ScanSpec,
    },
}

/// A profile type's id in a [`Fragment::ProfileTypes`] answer: Parca's form, `:delta` for
/// delta profiles.
pub fn kind_id(profile_type: &ProfileType, delta: bool) -> String {
    if delta {
        format!("{}:delta", profile_type.id())
    } else {
        profile_type.id()
    }
}

/// The profile type and delta kind of a [`kind_id`]: six parts are a delta kind (a five-part
/// id may itself end in `delta`, as a unit).
pub fn parse_kind(id: &str) -> firn_storage::Result<(ProfileType, bool)> {
    match id.strip_suffix(":delta") {
        Some(base) if id.split(':').count() == 6 => ProfileType::parse(base).map(|t| (t, true)),
        _ => ProfileType::parse(id).map(|t| (t, false)),
    }
}

/// The schema of a [`Fragment::Symbols`] answer on the wire: one row of encoded symbols.
fn symbols_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "symbols",
        DataType::Binary,
        false,
    )]))
}

/// A fragment's answer.
#[derive(Debug)]
pub struct FragmentOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// A [`Fragment::Symbols`] answer that has not left the node: the table itself, with no
    /// batch. [`FragmentOutput::for_wire`] encodes it when it is sent to a peer; on one node,
    /// encoding and decoding it were a tenth of an hour's merge.
    pub symbols: Option<SymbolTable>,
}

impl FragmentOutput {
    fn one(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<Self> {
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::Execution { source: e.into() })?;
        Ok(Self {
            schema,
            batches: vec![batch],
            symbols: None,
        })
    }

    /// A fragment's answer of batches.
    pub fn batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self {
            schema,
            batches,
            symbols: None,
        }
    }

    /// The answer as a peer receives it: an in-process symbol table becomes its one row of
    /// bytes, in the form `plain` asks for (see [`Fragment::Symbols`]).
    pub fn for_wire(self, plain: bool) -> Result<Self> {
        let Some(table) = self.symbols else {
            return Ok(self);
        };
        let bytes = if plain {
            firn_storage::symbols::encode_symbols_for_answer(&table)
        } else {
            firn_storage::symbols::encode_symbols(&table)
        };
        Self::one(
            symbols_schema(),
            vec![Arc::new(BinaryArray::from_iter_values([bytes]))],
        )
    }

    fn strings(name: &str, values: impl IntoIterator<Item = String>) -> Result<Self> {
        let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
        let values: Vec<String> = values.into_iter().collect();
        Self::one(schema, vec![Arc::new(StringArray::from(values))])
    }

    /// Every value of a one-column Utf8 output.
    pub fn string_values(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for b in &self.batches {
            let c = b
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| {
                    Error::InvalidQuery("a fragment answered a non-text column".into())
                })?;
            out.extend(c.iter().flatten().map(str::to_owned));
        }
        Ok(out)
    }

    /// Bytes held, for memory accounting.
    pub fn bytes(&self) -> usize {
        let symbols = self.symbols.as_ref().map_or(0, |t| t.memory_bytes());
        symbols
            + self
                .batches
                .iter()
                .map(|b| b.get_array_memory_size())
                .sum::<usize>()
    }
}

/// The schema of [`Fragment::MergeSums`] output.
pub fn merge_sums_schema(period: i64) -> SchemaRef {
    Arc::new(
        Schema::new(vec![
            Field::new(
                schema::STACK_ID,
                DataType::FixedSizeBinary(schema::STACK_ID_BYTES),
                false,
            ),
            Field::new(schema::VALUE, DataType::Int64, false),
        ])
        .with_metadata([(PERIOD_KEY.to_owned(), period.to_string())].into()),
    )
}

/// The schema of [`Fragment::Series`] output for `group_by`.
pub fn series_schema(group_by: &[String]) -> SchemaRef {
    let mut fields = vec![Field::new("bucket", DataType::Int64, false)];
    fields.extend(
        group_by
            .iter()
            .map(|g| Field::new(format!("group.{g}"), DataType::Utf8, true)),
    );
    fields.push(Field::new("sum", DataType::Int64, true));
    fields.push(Field::new("profiles", DataType::Int64, false));
    Arc::new(Schema::new(fields))
}

impl QueryEngine {
    /// Runs a fragment over this engine's store (one shard).
    pub async fn run_fragment(
        &self,
        tenant: &TenantId,
        fragment: &Fragment,
    ) -> Result<FragmentOutput> {
        match fragment {
            Fragment::MergeSums { query } => {
                let query = query.to_query()?;
                let table = self.table(tenant);
                let Some(filter) = Self::filters(&table, &query) else {
                    return Ok(FragmentOutput::batches(merge_sums_schema(0), Vec::new()));
                };
                let (totals, period) = self.stack_totals(&table, Some(filter)).await?;
                let schema = merge_sums_schema(period);
                let mut ids =
                    FixedSizeBinaryBuilder::with_capacity(totals.len(), schema::STACK_ID_BYTES);
                for (id, _) in &totals {
                    ids.append_value(id.to_bytes())
                        .map_err(|e| Error::Execution { source: e.into() })?;
                }
                let values = Int64Array::from_iter_values(totals.iter().map(|t| t.1));
                FragmentOutput::one(schema, vec![Arc::new(ids.finish()), Arc::new(values)])
            }
            Fragment::Symbols {
                stacks, start, end, ..
            } => {
                let table = self.table(tenant);
                let totals: Vec<(StackId, i64)> = stacks
                    .iter()
                    .map(|&(hi, lo)| (StackId((u128::from(hi) << 64) | u128::from(lo)), 1))
                    .collect();
                let mut merged = MergedProfile::empty(None);
                self.resolve(&table, *start..*end, &totals, &mut merged)
                    .await?;
                Ok(FragmentOutput {
                    schema: symbols_schema(),
                    batches: Vec::new(),
                    symbols: Some(merged.symbols),
                })
            }
            Fragment::Series {
                query,
                step,
                group_by,
            } => {
                let query = query.to_query()?;
                let batches = self.series_partial(tenant, &query, *step, group_by).await?;
                Ok(FragmentOutput::batches(series_schema(group_by), batches))
            }
            Fragment::LabelNames { query } => {
                FragmentOutput::strings("name", self.label_names(tenant, &query.to_query()?).await?)
            }
            Fragment::LabelValues { query, name, page } => FragmentOutput::strings(
                "value",
                self.label_values(tenant, &query.to_query()?, name, page)
                    .await?,
            ),
            Fragment::ProfileTypes { start, end } => FragmentOutput::strings(
                "id",
                self.profile_kinds(tenant, *start, *end)
                    .await?
                    .iter()
                    .map(|(t, delta)| kind_id(t, *delta)),
            ),
            Fragment::Columns => FragmentOutput::strings("name", self.table(tenant).label_names()),
            Fragment::Scan {
                columns,
                labels,
                filter,
            } => {
                let labels: BTreeSet<String> = labels.iter().cloned().collect();
                let table = self.table_with_labels(tenant, &labels);
                let mut df = self.frame(table)?;
                if let Some(f) = datafusion::logical_expr::utils::conjunction(filter.exprs()?) {
                    df = df.filter(f).map_err(|e| self.map_err(e))?;
                }
                let df = df
                    .select(columns.iter().map(|c| column(c)).collect::<Vec<_>>())
                    .map_err(|e| self.map_err(e))?;
                let schema = Arc::new(df.schema().as_arrow().clone());
                // The rows are held until sent: their memory counts against the query pool.
                let reservation =
                    MemoryConsumer::new("firn scan fragment").register(self.memory_pool());
                let mut batches = Vec::new();
                let mut bytes = 0usize;
                self.for_each_batch(df, |batch| {
                    bytes += batch.get_array_memory_size();
                    reservation.try_resize(bytes).map_err(|e| self.map_err(e))?;
                    batches.push(batch.clone());
                    Ok(())
                })
                .await?;
                Ok(FragmentOutput::batches(schema, batches))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_ids_round_trip() {
        for id in ["a:b:c:d:e", "a:b:c:d:delta"] {
            let t = ProfileType::parse(id).expect("valid");
            for delta in [false, true] {
                assert_eq!(
                    parse_kind(&kind_id(&t, delta)).expect("parses"),
                    (t.clone(), delta)
                );
            }
        }
    }

    #[test]
    fn a_query_spec_round_trips() {
        let q = ProfileQuery::new(
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api", pod=~"web-.*", x!=""}"#,
            Nanos(5),
            Nanos(10),
        )
        .expect("valid");
        let spec = QuerySpec::from(&q);
        let json = serde_json::to_string(&spec).expect("serialise");
        let back: QuerySpec = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, spec);
        let q2 = back.to_query().expect("query");
        assert_eq!(QuerySpec::from(&q2), spec);
        assert!(q2.selector.matchers[1].matches(Some("web-1")));
        let bad = MatcherSpec {
            name: "a".into(),
            op: "~~".into(),
            value: "x".into(),
        };
        assert!(matcher(&bad).is_err());
    }

    #[test]
    fn a_scan_spec_is_captured_again_exactly() {
        let mut filter = ScanFilter {
            time: Nanos(100)..Nanos(200),
            profile_types: Some(BTreeSet::from(["a:b:c:d:e".to_owned()])),
            delta: Some(true),
            labels: vec![LabelMatcher::new("pod", MatchOp::Eq, "p1").expect("matcher")],
        };
        let spec = ScanSpec::from(&filter);
        let exprs = spec.exprs().expect("exprs");
        let again = crate::table::scan_filter(&exprs);
        assert_eq!(ScanSpec::from(&again), spec);
        filter.profile_types = Some(BTreeSet::new());
        let none = ScanSpec::from(&filter).exprs().expect("exprs");
        assert!(none.contains(&lit(false)));
    }
}
