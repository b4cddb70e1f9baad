//! The metering loop: every `--usage-flush-secs` it records the gauges of the shards this node
//! leads (each tenant's active series and stored bytes) and writes the node's usage ledger to
//! the object store; `/metrics` renders the same per tenant, for a bounded set of tenants.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use firn_query::Fragment;
use firn_storage::{Store, TenantId};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::tenancy::usage::{Counters, OTHER};

/// Tenants `/metrics` names at most (by ingested bytes); the rest are summed as `~other`.
pub const MAX_METRIC_TENANTS: usize = 100;

pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let every = cluster.settings.usage_flush;
    loop {
        let stopping = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep(every) => false,
        };
        if let Err(e) = persist(&cluster).await {
            tracing::warn!(error = %e, "writing usage records failed; retried at the next tick");
        }
        if stopping {
            return;
        }
    }
}

/// Records the gauges and writes the ledger now.
pub async fn persist(cluster: &Cluster) -> crate::error::Result<()> {
    let tenancy = &cluster.tenancy;
    tenancy.observe(&gauges(cluster));
    let settings = &cluster.shard_settings;
    tenancy
        .usage
        .persist(
            settings.object_store.as_ref(),
            &settings.prefix,
            tenancy.now(),
        )
        .await
}

/// Active series and stored bytes per tenant over the shards this node leads (each shard is
/// counted by its leader only).
pub fn gauges(cluster: &Cluster) -> BTreeMap<TenantId, (u64, u64)> {
    let now = cluster.tenancy.now();
    let mut out: BTreeMap<TenantId, (u64, u64)> = BTreeMap::new();
    for replica in cluster.replicas() {
        // Every replica sweeps (a former leader's entries expire); leaders report.
        let counts = replica.series.counts(now);
        if !replica.raft.is_leader() {
            continue;
        }
        for (tenant, series) in counts {
            out.entry(tenant).or_default().0 += series;
        }
        for block in &replica.store.manifest().blocks {
            for (tenant, t) in &block.tenants {
                let share = (u128::from(block.bytes()) * u128::from(t.rows)
                    / u128::from(block.rows.max(1))) as u64;
                out.entry(tenant.clone()).or_default().1 += share;
            }
        }
    }
    out
}

/// The bytes of `tenant`'s blocks in `store` that `fragment`'s time range covers (each
/// block's share for the tenant): what a query is billed as scanning. Metadata fragments
/// (symbols, profile types, columns) scan nothing billable.
pub fn scanned_bytes(store: &Store, tenant: &TenantId, fragment: &Fragment) -> u64 {
    let (start, end) = match fragment {
        Fragment::MergeSums { query }
        | Fragment::Series { query, .. }
        | Fragment::LabelNames { query }
        | Fragment::LabelValues { query, .. } => (query.start, query.end),
        Fragment::Scan { filter, .. } => (filter.start, filter.end),
        Fragment::Symbols { .. } | Fragment::ProfileTypes { .. } | Fragment::Columns => {
            return 0;
        }
    };
    store
        .manifest()
        .blocks
        .iter()
        .filter_map(|b| {
            let t = b.tenants.get(tenant)?;
            (t.min_time < end && t.max_time >= start).then(|| {
                (u128::from(b.samples_bytes) * u128::from(t.rows) / u128::from(b.rows.max(1)))
                    as u64
            })
        })
        .sum()
}

/// The tenancy series of `/metrics`: the bounded structures' sizes, then usage per tenant.
pub fn render_all(cluster: &Cluster, out: &mut String) {
    // Sweeps idle series first.
    cluster.tenancy.observe(&gauges(cluster));
    let tracked: usize = cluster.replicas().iter().map(|r| r.series.tracked()).sum();
    let _ = writeln!(
        out,
        "# HELP firn_tenancy_rate_buckets Tenants with an ingestion rate bucket on this node (at most 100000).\n\
         # TYPE firn_tenancy_rate_buckets gauge\nfirn_tenancy_rate_buckets {}\n\
         # HELP firn_tenancy_series_tracked Active series tracked by this node's shard leaders (at most {} a shard).\n\
         # TYPE firn_tenancy_series_tracked gauge\nfirn_tenancy_series_tracked {tracked}",
        cluster.tenancy.rates.len(),
        crate::tenancy::series::MAX_TRACKED,
    );
    render(&cluster.tenancy.usage.totals(), out);
}

/// The per-tenant series of `/metrics`.
pub fn render(totals: &BTreeMap<String, Counters>, out: &mut String) {
    let mut tenants: Vec<(&String, &Counters)> = totals.iter().collect();
    tenants.sort_by(|a, b| {
        b.1.ingested_bytes
            .cmp(&a.1.ingested_bytes)
            .then(a.0.cmp(b.0))
    });
    let mut shown: Vec<(String, Counters)> = tenants
        .iter()
        .take(MAX_METRIC_TENANTS)
        .map(|(t, c)| ((*t).clone(), **c))
        .collect();
    if tenants.len() > MAX_METRIC_TENANTS {
        let mut other = Counters::default();
        for (_, c) in &tenants[MAX_METRIC_TENANTS..] {
            other.add(c);
        }
        shown.push((OTHER.to_owned(), other));
    }
    type Field = fn(&Counters) -> u64;
    let series: [(&str, &str, &str, Field); 7] = [
        (
            "firn_tenant_ingested_bytes_total",
            "counter",
            "Profile bytes of admitted writes as received, by tenant.",
            |c| c.ingested_bytes,
        ),
        (
            "firn_tenant_ingested_samples_total",
            "counter",
            "Samples written, by tenant.",
            |c| c.ingested_samples,
        ),
        (
            "firn_tenant_ingested_profiles_total",
            "counter",
            "Profiles written, by tenant.",
            |c| c.ingested_profiles,
        ),
        (
            "firn_tenant_queries_total",
            "counter",
            "Queries run, by tenant.",
            |c| c.queries,
        ),
        (
            "firn_tenant_scanned_bytes_total",
            "counter",
            "Bytes of stored data queries covered on this node, by tenant.",
            |c| c.scanned_bytes,
        ),
        (
            "firn_tenant_active_series",
            "gauge",
            "Series written to in the last 10 minutes on shards this node leads, by tenant.",
            |c| c.active_series,
        ),
        (
            "firn_tenant_stored_bytes",
            "gauge",
            "Bytes in blocks of shards this node leads, by tenant.",
            |c| c.stored_bytes,
        ),
    ];
    for (name, kind, help, field) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (tenant, c) in &shown {
            let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {}", escape(tenant), field(c));
        }
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_a_bounded_set_of_tenants() {
        let totals: BTreeMap<String, Counters> = (0..MAX_METRIC_TENANTS as u64 + 5)
            .map(|i| {
                (
                    format!("t{i}"),
                    Counters {
                        ingested_bytes: i,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let mut out = String::new();
        render(&totals, &mut out);
        let lines = out
            .lines()
            .filter(|l| l.starts_with("firn_tenant_ingested_bytes_total{"))
            .count();
        assert_eq!(lines, MAX_METRIC_TENANTS + 1);
        // The smallest five are summed under ~other: 0 + 1 + 2 + 3 + 4.
        assert!(
            out.contains("firn_tenant_ingested_bytes_total{tenant=\"~other\"} 10"),
            "{out}"
        );
        assert!(out.contains("firn_tenant_ingested_bytes_total{tenant=\"t104\"} 104"));
    }
}
