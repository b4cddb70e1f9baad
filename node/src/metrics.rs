//! Prometheus metrics, rendered by hand in the text exposition format. Every series is fixed
//! or keyed by a route and a status code, so the set is bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ids::GroupId;
use crate::raft::RaftStatus;

/// A sum and a count: enough for a rate and a mean in Prometheus.
#[derive(Debug, Default)]
pub struct Summary {
    micros: AtomicU64,
    count: AtomicU64,
}

impl Summary {
    pub fn observe(&self, d: Duration) {
        self.micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (route, status) → requests. Routes come from the router's own paths.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    request_time: Mutex<BTreeMap<String, Summary>>,
    pub ingest_bytes: AtomicU64,
    pub ingest_profiles: AtomicU64,
    pub ingest_samples: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    pub flush_time: Summary,
    pub compactions: AtomicU64,
    pub compaction_failures: AtomicU64,
    pub compaction_input_bytes: AtomicU64,
    pub compaction_output_bytes: AtomicU64,
    /// Jobs the last round left waiting, over the shards this node leads.
    pub compaction_pending: AtomicU64,
    /// How long ago the oldest waiting job's window ended, at the last round.
    pub compaction_lag_seconds: AtomicU64,
    /// The local cache of block objects, when the object store is remote.
    pub disk_cache: std::sync::OnceLock<Arc<firn_storage::disk_cache::DiskCacheStats>>,
}

/// Values read at scrape time: sums over the node's shard replicas, and each Raft group's
/// state (one series per group: the meta group and the node's shards, a bounded set).
#[derive(Debug, Default)]
pub struct Gauges {
    pub buffer_bytes: u64,
    pub buffer_samples: u64,
    pub log_bytes: u64,
    pub blocks: u64,
    /// Block objects the node's shard replicas wrote (one PUT each: flushes and compactions).
    pub block_puts: u64,
    /// Blocks whose stack sums answered merges instead of their rows, on this node's replicas.
    pub blocks_summed: u64,
    pub groups: Vec<(GroupId, RaftStatus)>,
}

/// A Raft gauge: name, help, and how to read it from a group's status.
type RaftGauge = (&'static str, &'static str, fn(&RaftStatus) -> u64);

/// The `group` label of a Raft group: `meta`, or the shard number.
fn group_label(group: GroupId) -> String {
    match group {
        GroupId::Meta => "meta".into(),
        GroupId::Shard(s) => s.0.to_string(),
    }
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics lock poisoned")
            .entry((route.to_owned(), status))
            .or_default() += 1;
        self.request_time
            .lock()
            .expect("metrics lock poisoned")
            .entry(route.to_owned())
            .or_default()
            .observe(elapsed);
    }

    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "firn_http_requests_total",
            "counter",
            "HTTP requests by route and status.",
        );
        for ((route, status), n) in self.requests.lock().expect("metrics lock poisoned").iter() {
            let _ = writeln!(
                out,
                "firn_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        header(
            &mut out,
            "firn_http_request_duration_seconds",
            "summary",
            "Time to answer HTTP requests, by route.",
        );
        for (route, s) in self
            .request_time
            .lock()
            .expect("metrics lock poisoned")
            .iter()
        {
            let _ = writeln!(
                out,
                "firn_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\nfirn_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                s.micros.load(Ordering::Relaxed) as f64 / 1e6,
                s.count.load(Ordering::Relaxed)
            );
        }
        let counters = [
            (
                "firn_ingest_bytes_total",
                "Profile bytes accepted (as received).",
                &self.ingest_bytes,
            ),
            (
                "firn_ingest_profiles_total",
                "Profile rows stored.",
                &self.ingest_profiles,
            ),
            (
                "firn_ingest_samples_total",
                "Samples stored.",
                &self.ingest_samples,
            ),
            ("firn_flushes_total", "Blocks flushed.", &self.flushes),
            (
                "firn_flush_failures_total",
                "Flushes that failed (retried).",
                &self.flush_failures,
            ),
            (
                "firn_compactions_total",
                "Compaction jobs whose output replaced their inputs.",
                &self.compactions,
            ),
            (
                "firn_compaction_failures_total",
                "Compaction jobs that failed (retried).",
                &self.compaction_failures,
            ),
            (
                "firn_compaction_input_bytes_total",
                "Block bytes compaction read.",
                &self.compaction_input_bytes,
            ),
            (
                "firn_compaction_output_bytes_total",
                "Block bytes compaction wrote.",
                &self.compaction_output_bytes,
            ),
        ];
        for (name, help, value) in [
            (
                "firn_compaction_pending_jobs",
                "Compaction jobs waiting on the shards this node leads, at the last round.",
                &self.compaction_pending,
            ),
            (
                "firn_compaction_lag_seconds",
                "Seconds since the oldest waiting compaction window ended (0: none waiting).",
                &self.compaction_lag_seconds,
            ),
        ] {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        if let Some(cache) = self.disk_cache.get() {
            for (name, kind, help, value) in [
                (
                    "firn_disk_cache_bytes",
                    "gauge",
                    "Bytes of block objects in the local disk cache.",
                    &cache.bytes,
                ),
                (
                    "firn_disk_cache_hits_total",
                    "counter",
                    "Block object reads served from the local disk cache.",
                    &cache.hits,
                ),
                (
                    "firn_disk_cache_misses_total",
                    "counter",
                    "Block objects downloaded into the local disk cache.",
                    &cache.misses,
                ),
                (
                    "firn_disk_cache_evictions_total",
                    "counter",
                    "Block objects evicted from (or deleted in) the local disk cache.",
                    &cache.evictions,
                ),
            ] {
                header(&mut out, name, kind, help);
                let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
            }
        }
        for (name, help, value) in counters {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        header(
            &mut out,
            "firn_flush_duration_seconds",
            "summary",
            "Time to upload a block and commit it through Raft.",
        );
        let _ = writeln!(
            out,
            "firn_flush_duration_seconds_sum {}\nfirn_flush_duration_seconds_count {}",
            self.flush_time.micros.load(Ordering::Relaxed) as f64 / 1e6,
            self.flush_time.count.load(Ordering::Relaxed)
        );
        let store_gauges = [
            (
                "firn_buffer_bytes",
                "Bytes held by the unflushed buffer.",
                gauges.buffer_bytes,
            ),
            (
                "firn_buffer_samples",
                "Samples in the unflushed buffer.",
                gauges.buffer_samples,
            ),
            (
                "firn_log_bytes",
                "Bytes of Raft log on disk (entries not yet purged after a flush).",
                gauges.log_bytes,
            ),
            (
                "firn_blocks",
                "Blocks in the manifests of this node's shard replicas.",
                gauges.blocks,
            ),
        ];
        for (name, help, value) in store_gauges {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "firn_block_puts_total",
            "counter",
            "Block objects (one PUT each) written by this node's shard replicas since they opened.",
        );
        let _ = writeln!(out, "firn_block_puts_total {}", gauges.block_puts);
        header(
            &mut out,
            "firn_query_blocks_summed_total",
            "counter",
            "Blocks whose stack sums answered a merge instead of their rows, on this node's shard replicas since they opened.",
        );
        let _ = writeln!(
            out,
            "firn_query_blocks_summed_total {}",
            gauges.blocks_summed
        );
        header(
            &mut out,
            "firn_raft_role",
            "gauge",
            "This node's role in each Raft group it is a member of (1 for the role it holds).",
        );
        for (group, raft) in &gauges.groups {
            let g = group_label(*group);
            for (role, holds) in [("leader", raft.leader), ("follower", !raft.leader)] {
                let _ = writeln!(
                    out,
                    "firn_raft_role{{group=\"{g}\",role=\"{role}\"}} {}",
                    u8::from(holds)
                );
            }
        }
        let raft_gauges: [RaftGauge; 6] = [
            ("firn_raft_term", "Current Raft term.", |r| r.term),
            (
                "firn_raft_commit_index",
                "Index of the last committed log entry.",
                |r| r.commit_index,
            ),
            (
                "firn_raft_applied_index",
                "Index of the last entry applied to the state machine.",
                |r| r.applied_index,
            ),
            (
                "firn_raft_last_log_index",
                "Index of the last entry in the log.",
                |r| r.last_log_index,
            ),
            (
                "firn_raft_snapshot_index",
                "Index the last snapshot covers.",
                |r| r.snapshot_index,
            ),
            (
                "firn_raft_purged_index",
                "Index the log has been purged through.",
                |r| r.purged_index,
            ),
        ];
        for (name, help, value) in raft_gauges {
            header(&mut out, name, "gauge", help);
            for (group, raft) in &gauges.groups {
                let _ = writeln!(
                    out,
                    "{name}{{group=\"{}\"}} {}",
                    group_label(*group),
                    value(raft)
                );
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_exposition_format() {
        let m = Metrics::default();
        m.record_request("/ingest", 200, Duration::from_millis(3));
        m.record_request("/ingest", 400, Duration::from_millis(1));
        m.ingest_samples.fetch_add(7, Ordering::Relaxed);
        let text = m.render(&Gauges {
            buffer_bytes: 10,
            buffer_samples: 7,
            log_bytes: 20,
            blocks: 1,
            block_puts: 4,
            blocks_summed: 3,
            groups: vec![(
                GroupId::Shard(firn_storage::ShardId(0)),
                RaftStatus {
                    leader: true,
                    term: 2,
                    commit_index: 9,
                    ..Default::default()
                },
            )],
        });
        assert!(
            text.contains("firn_raft_role{group=\"0\",role=\"leader\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("firn_raft_commit_index{group=\"0\"} 9"),
            "{text}"
        );
        assert!(text.contains("firn_query_blocks_summed_total 3"), "{text}");
        assert!(
            text.contains("firn_http_requests_total{route=\"/ingest\",status=\"400\"} 1"),
            "{text}"
        );
        assert!(text.contains("firn_ingest_samples_total 7"), "{text}");
        assert!(
            text.contains("# TYPE firn_log_bytes gauge\nfirn_log_bytes 20"),
            "{text}"
        );
        assert!(
            text.contains("firn_http_request_duration_seconds_count{route=\"/ingest\"} 2"),
            "{text}"
        );
    }
}
