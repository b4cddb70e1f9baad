//! Writes through any node: admitted here (the node's in-flight allowance), decoded and
//! normalised here (so bad input is refused with a clear error before anything is sent),
//! split by shard, and committed by each shard's leader — this node's own replica when it
//! leads, else the leader over `Forward`, all of one shard's parts in one message. The caller
//! is answered once every part is committed.
//!
//! ```text
//!  writes ─► allowance ─► normalise (blocking pool) ─► shard = hash(tenant, series) mod shards
//!         ─► per shard: local leader ─► Writer::commit
//!                       else Forward(parts) ─► the leader's Writer::commit
//!         ─► NotLeader / unreachable: retry at the new leader until the deadline
//! ```
//!
//! Every part carries an idempotency key (the client's, or one made here), and a shard's
//! state machine remembers the keys it applied: a retry after a leader change whose first
//! attempt did commit counts once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use firn_storage::buffer::WriteStats;
use firn_storage::{ShardId, TenantId, WriteRequest};
use tokio::time::Instant;

use crate::api::error::{Code, error_chain};
use crate::cluster::Cluster;
use crate::cluster::meta::MetaState;
use crate::cluster::replica::ShardReplica;
use crate::cluster::rpc::pb;
use crate::error::{Error, Result};
use crate::ids::NodeId;
use crate::raft::Prepared;
use crate::tenancy::rate::Rate;
use firn_storage::labels::LabelLimits;
use firn_storage::normalize::NormalizeLimits;

/// How long a write is retried (leader changes, unreachable leaders) before it fails.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(15);
/// How long one attempt at a leader may take: a leader that stopped answering (paused,
/// partitioned) is given up on this soon and the write tried where the shard's other replicas
/// say the new leader is. A retried write carries its key, so it counts once either way.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a write waits for room among the writes in flight before it is refused.
const INFLIGHT_WAIT: Duration = Duration::from_secs(10);
/// Pauses between attempts at a shard whose leader is unknown or unreachable: short, because
/// a failed attempt at a dead node costs a refused connection, and a write waits for the next
/// leader no longer than it takes to notice it (an election takes about a second).
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_millis(100);

/// A write as a client sent it, with its idempotency key (already scoped to the tenant).
#[derive(Debug)]
pub struct ClientWrite {
    pub request: WriteRequest,
    pub key: Option<String>,
}

/// A normalised write on its way to its shard's leader.
#[derive(Clone)]
struct Part {
    /// Its position in the caller's list.
    index: usize,
    /// The normalised write's encoding: what the log holds and the leader is sent.
    record: Bytes,
    /// The same in memory, where this node normalised it.
    normalized: Option<Arc<Prepared>>,
    key: Arc<str>,
}

/// The shard of a series: a hash of the tenant and the labels the client sent, so a
/// profile's rows and symbols stay together.
pub fn shard_of(tenant: &TenantId, labels: &[(String, String)], shards: u32) -> ShardId {
    let mut sorted: Vec<&(String, String)> = labels.iter().collect();
    sorted.sort();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(tenant.as_str().as_bytes());
    for (name, value) in sorted {
        h.update(&[0]);
        h.update(name.as_bytes());
        h.update(&[1]);
        h.update(value.as_bytes());
    }
    ShardId((h.digest() % u64::from(shards.max(1))) as u32)
}

/// A key for a write the client sent without one: unique to this node and process.
fn made_key(tenant: &TenantId) -> String {
    format!("{}/~{:016x}", tenant.as_str(), rand::random::<u64>())
}

/// Internal codes of a part's failure (beside Connect's): the node does not lead the shard,
/// or a transient failure the sender should retry.
const NOT_LEADER: &str = "not_leader";
const RETRY: &str = "retry";

fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::NotLeader { .. }
            | Error::Unreachable(_)
            | Error::NotReady(_)
            | Error::Raft(_)
            | Error::ShuttingDown
    )
}

impl Cluster {
    /// Admits, routes and commits writes; one answer per write, in order.
    pub async fn write(&self, writes: Vec<ClientWrite>) -> Vec<Result<WriteStats>> {
        let n = writes.len();
        if let Err(e) = self.check_member() {
            return (0..n).map(|_| Err(e.clone_for_retry())).collect();
        }
        let mut results: Vec<Option<Result<WriteStats>>> = (0..n).map(|_| None).collect();
        // The tenants' limits, before anything is decoded: a refused write costs this check.
        let state = self.state();
        let now = self.tenancy.now();
        let mut admitted = Vec::with_capacity(n);
        for (index, w) in writes.into_iter().enumerate() {
            match self.admit(&state, &w.request, now) {
                Ok(limits) => admitted.push((index, w, limits)),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let size: usize = admitted
            .iter()
            .map(|(_, w, _)| payload_len(&w.request))
            .sum();
        let kib = u32::try_from(size.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.inflight_kib);
        // Room among the writes in flight, for the bodies as received (a larger batch than the
        // whole allowance waits until it is alone).
        let _room = match tokio::time::timeout(
            INFLIGHT_WAIT,
            self.inflight.clone().acquire_many_owned(kib),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return (0..n).map(|_| Err(Error::ShuttingDown)).collect(),
            Err(_) => {
                let bytes = self.inflight_bytes() as usize;
                return (0..n).map(|_| Err(Error::Overloaded { bytes })).collect();
            }
        };
        let Some(shards) = state.settings.as_ref().map(|s| s.shards) else {
            return (0..n)
                .map(|_| Err(Error::NotReady("the cluster is not formed yet".into())))
                .collect();
        };
        let metered: Vec<(usize, TenantId, usize)> = admitted
            .iter()
            .map(|(i, w, _)| (*i, w.request.tenant.clone(), payload_len(&w.request)))
            .collect();
        let indices: Vec<usize> = admitted.iter().map(|(i, _, _)| *i).collect();
        // Decoding and normalising are CPU work: off the I/O runtime, every write in parallel.
        let prepared = futures::future::join_all(admitted.into_iter().map(|(_, w, limits)| {
            tokio::task::spawn_blocking(move || {
                let key = w.key.unwrap_or_else(|| made_key(&w.request.tenant));
                let shard = shard_of(&w.request.tenant, &w.request.labels, shards);
                firn_storage::normalize::normalize(w.request, &limits)
                    .map(|normalized| {
                        let record =
                            Bytes::from(firn_storage::normalize::encode_normalized(&normalized));
                        (shard, record, Arc::new(Prepared::Local(normalized)), key)
                    })
                    .map_err(Error::from)
            })
        }))
        .await;
        let mut by_shard: BTreeMap<ShardId, Vec<Part>> = BTreeMap::new();
        for (index, p) in indices.into_iter().zip(prepared) {
            match p {
                Ok(Ok((shard, record, normalized, key))) => {
                    by_shard.entry(shard).or_default().push(Part {
                        index,
                        record,
                        normalized: Some(normalized),
                        key: Arc::from(key),
                    })
                }
                Ok(Err(e)) => results[index] = Some(Err(e)),
                Err(e) => {
                    results[index] = Some(Err(Error::Internal(format!(
                        "normalising task failed: {e}"
                    ))))
                }
            }
        }
        let routed = futures::future::join_all(
            by_shard
                .into_iter()
                .map(|(shard, parts)| self.route(shard, parts)),
        )
        .await;
        for (index, result) in routed.into_iter().flatten() {
            results[index] = Some(result);
        }
        for (index, tenant, bytes) in metered {
            if let Some(Ok(stats)) = results[index]
                .as_ref()
                .filter(|r| !matches!(r, Ok(s) if s.repeated))
            {
                self.tenancy.usage.record(&tenant, now, |c| {
                    c.ingested_bytes += bytes as u64;
                    c.ingested_samples += stats.samples as u64;
                    c.ingested_profiles += stats.profiles as u64;
                });
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Internal("a write got no answer".into()))))
            .collect()
    }

    /// [`Cluster::write`] of one write.
    pub async fn write_one(
        &self,
        request: WriteRequest,
        key: Option<String>,
    ) -> Result<WriteStats> {
        self.write(vec![ClientWrite { request, key }])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("a write got no answer".into())))
    }

    /// Checks a write against its tenant's size and rate limits; gives the limits its
    /// normalisation keeps to (the tenant's, within the node's own).
    fn admit(
        &self,
        state: &MetaState,
        request: &WriteRequest,
        now: firn_storage::Nanos,
    ) -> Result<NormalizeLimits> {
        let tenant = &request.tenant;
        let limits = state.tenancy.limits(tenant.as_str());
        let bytes = payload_len(request) as u64;
        if bytes > limits.max_profile_bytes {
            return Err(Error::Limit(format!(
                "the profile is {bytes} bytes, tenant {:?}'s limit is max_profile_bytes = {}",
                tenant.as_str(),
                limits.max_profile_bytes
            )));
        }
        self.tenancy.rates.take(
            tenant,
            bytes,
            Rate {
                bytes_per_sec: limits.ingestion_rate_bytes,
                burst: limits.ingestion_burst_bytes,
                nodes: state.active_count(),
            },
            now,
        )?;
        let mut normalize = self.shard_settings.store.limits;
        let cap = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        normalize.decode.max_decompressed_bytes = normalize
            .decode
            .max_decompressed_bytes
            .min(cap(limits.max_profile_decompressed_bytes));
        normalize.labels = LabelLimits {
            max_name_len: cap(limits.max_label_name_length),
            max_value_len: cap(limits.max_label_value_length),
            max_labels_per_series: cap(limits.max_label_names_per_series),
        };
        Ok(normalize)
    }

    /// On a shard's leader: refuses a write that would take its tenant past its share of
    /// active series on this shard.
    fn admit_series(&self, replica: &ShardReplica, prepared: &Prepared) -> Result<()> {
        let (tenant, profiles) = match prepared {
            Prepared::Local(n) => (&n.tenant, &n.profiles),
            Prepared::Packed(n) => (&n.tenant, &n.profiles),
        };
        let state = self.state();
        let limit = state.tenancy.limits(tenant.as_str()).max_active_series;
        let shards = state.settings.as_ref().map_or(1, |s| s.shards.max(1));
        let share = limit.div_ceil(u64::from(shards));
        let series: Vec<u64> = profiles
            .iter()
            .map(|p| {
                xxhash_rust::xxh3::xxh3_64_with_seed(
                    p.profile_type.id().as_bytes(),
                    p.labels.fingerprint(),
                )
            })
            .collect();
        replica
            .series
            .admit(tenant, &series, share, self.tenancy.now())
    }

    fn inflight_bytes(&self) -> u64 {
        u64::from(self.inflight_kib - self.inflight.available_permits() as u32) * 1024
    }

    /// Commits `parts` on `shard`'s leader, following leader changes until the deadline.
    async fn route(
        &self,
        shard: ShardId,
        mut pending: Vec<Part>,
    ) -> Vec<(usize, Result<WriteStats>)> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut done = Vec::with_capacity(pending.len());
        let mut backoff = RETRY_FIRST;
        let mut attempt = 0usize;
        loop {
            let target = self.target(shard, attempt);
            attempt += 1;
            let answers = match target {
                Some(t) if t == self.id => self.commit_local(shard, &pending).await,
                Some(t) => self.forward(shard, t, &pending, deadline).await,
                None => pending
                    .iter()
                    .map(|_| {
                        Err(Error::NotReady(format!(
                            "shard {shard} has no known replica"
                        )))
                    })
                    .collect(),
            };
            let mut retry = Vec::new();
            let mut hinted = false;
            let mut last_error = None;
            for (part, answer) in pending.into_iter().zip(answers) {
                match answer {
                    Err(e) if retryable(&e) => {
                        if let Error::NotLeader {
                            leader: Some((leader, _)),
                            ..
                        } = &e
                        {
                            hinted |= Some(*leader) != target;
                            self.note_leader(shard, *leader);
                        } else {
                            self.forget_leader(shard, target);
                        }
                        last_error = Some(e);
                        retry.push(part);
                    }
                    answer => done.push((part.index, answer)),
                }
            }
            if retry.is_empty() {
                return done;
            }
            if Instant::now() >= deadline {
                let e = last_error.map_or_else(|| "unknown".to_owned(), |e| error_chain(&e));
                done.extend(retry.into_iter().map(|p| {
                    (
                        p.index,
                        Err(Error::NotReady(format!(
                            "shard {shard} could not commit the write within {} s: {e}",
                            WRITE_DEADLINE.as_secs()
                        ))),
                    )
                }));
                return done;
            }
            pending = retry;
            if !hinted {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }

    /// Commits parts on this node's replica of `shard` (which must lead it).
    async fn commit_local(&self, shard: ShardId, parts: &[Part]) -> Vec<Result<WriteStats>> {
        let Some(replica) = self.replica(shard) else {
            return parts
                .iter()
                .map(|_| Err(Error::NotReady(format!("no replica of shard {shard} here"))))
                .collect();
        };
        if !replica.raft.is_leader() {
            let leader = replica
                .raft
                .leader()
                .filter(|l| *l != self.id)
                .and_then(|l| Some((l, self.addr_of(l)?)));
            return parts
                .iter()
                .map(|_| {
                    Err(Error::NotLeader {
                        group: crate::ids::GroupId::Shard(shard),
                        leader: leader.clone(),
                    })
                })
                .collect();
        }
        futures::future::join_all(parts.iter().map(|p| async {
            let normalized = match &p.normalized {
                Some(n) => n.clone(),
                None => decode_forwarded(&p.record).await?,
            };
            self.admit_series(&replica, &normalized)?;
            replica
                .writer
                .commit(p.record.clone(), normalized, Some(p.key.clone()))
                .await
        }))
        .await
    }

    /// Sends parts to `target` (believed to lead `shard`) in one message.
    async fn forward(
        &self,
        shard: ShardId,
        target: NodeId,
        parts: &[Part],
        deadline: Instant,
    ) -> Vec<Result<WriteStats>> {
        let all = |e: Error| parts.iter().map(|_| Err(e.clone_for_retry())).collect();
        let Some(addr) = self.addr_of(target) else {
            return all(Error::NotReady(format!(
                "node {target} has no known address"
            )));
        };
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), ATTEMPT_TIMEOUT);
        let request = pb::ForwardRequest {
            shard: shard.0,
            parts: parts
                .iter()
                .map(|p| pb::WritePart {
                    record: p.record.clone(),
                    key: p.key.to_string(),
                })
                .collect(),
            timeout_ms: timeout.as_millis() as u64,
            from: self.id.0,
        };
        match self.peers.forward(&addr, request, timeout).await {
            Ok(reply) if reply.results.len() == parts.len() => {
                reply.results.into_iter().map(part_result).collect()
            }
            Ok(reply) => all(Error::Unreachable(format!(
                "node {target} answered {} results for {} writes",
                reply.results.len(),
                parts.len()
            ))),
            Err(e) => all(e),
        }
    }

    /// Serves `Forward`: commits parts for `shard` if this node leads it.
    pub async fn commit_forwarded(
        &self,
        shard: ShardId,
        parts: Vec<pb::WritePart>,
    ) -> Vec<pb::PartResult> {
        let size: usize = parts.iter().map(|p| p.record.len()).sum();
        let kib = u32::try_from(size.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.inflight_kib);
        let permit =
            tokio::time::timeout(INFLIGHT_WAIT, self.inflight.clone().acquire_many_owned(kib))
                .await;
        let _room = match permit {
            Ok(Ok(p)) => p,
            _ => {
                let e = Error::Overloaded {
                    bytes: self.inflight_bytes() as usize,
                };
                return parts
                    .iter()
                    .map(|_| encode_result(Err(e.clone_for_retry())))
                    .collect();
            }
        };
        let parts: Vec<Part> = parts
            .into_iter()
            .enumerate()
            .map(|(index, p)| Part {
                index,
                record: p.record,
                normalized: None,
                key: Arc::from(p.key),
            })
            .collect();
        self.commit_local(shard, &parts)
            .await
            .into_iter()
            .map(encode_result)
            .collect()
    }
}

/// A write another node normalised, decoded and checked whole before it is proposed: the log
/// takes only records every replica can apply.
async fn decode_forwarded(record: &Bytes) -> Result<Arc<Prepared>> {
    let record = record.clone();
    tokio::task::spawn_blocking(move || {
        let n = firn_storage::normalize::decode_normalized(record)
            .map_err(|reason| Error::BadRequest(format!("a forwarded write: {reason}")))?;
        n.symbols
            .validate()
            .map_err(|reason| Error::BadRequest(format!("a forwarded write: {reason}")))?;
        Ok(Arc::new(Prepared::Packed(n)))
    })
    .await
    .map_err(|e| Error::Internal(format!("decoding task failed: {e}")))?
}

fn payload_len(request: &WriteRequest) -> usize {
    match &request.payload {
        firn_storage::Payload::Pprof(b) => b.len(),
        firn_storage::Payload::Folded { text, .. } => text.len(),
    }
}

/// A commit's answer as a `PartResult`.
fn encode_result(result: Result<WriteStats>) -> pb::PartResult {
    match result {
        Ok(stats) => pb::PartResult {
            ok: true,
            profiles: stats.profiles as u64,
            samples: stats.samples as u64,
            bytes: stats.bytes as u64,
            repeated: stats.repeated,
            ..Default::default()
        },
        Err(e) => {
            let (code, status) = e.code();
            let (code, leader, leader_addr) = match &e {
                Error::NotLeader { leader, .. } => {
                    let (id, addr) = leader.clone().map_or((0, String::new()), |(i, a)| (i.0, a));
                    (NOT_LEADER.to_owned(), id, addr)
                }
                e if retryable(e) => (RETRY.to_owned(), 0, String::new()),
                _ => (code.as_str().to_owned(), 0, String::new()),
            };
            pb::PartResult {
                ok: false,
                code,
                message: error_chain(&e),
                leader,
                leader_addr,
                status: u32::from(status.as_u16()),
                ..Default::default()
            }
        }
    }
}

/// A `PartResult` as the answer it stands for.
fn part_result(r: pb::PartResult) -> Result<WriteStats> {
    if r.ok {
        return Ok(WriteStats {
            profiles: r.profiles as usize,
            samples: r.samples as usize,
            bytes: r.bytes as usize,
            repeated: r.repeated,
        });
    }
    match r.code.as_str() {
        NOT_LEADER => Err(Error::NotLeader {
            group: crate::ids::GroupId::Meta,
            leader: (r.leader != 0 && !r.leader_addr.is_empty())
                .then_some((NodeId(r.leader), r.leader_addr)),
        }),
        RETRY => Err(Error::Unreachable(r.message)),
        name => Err(Error::Remote {
            code: Code::from_name(name).unwrap_or(Code::Internal),
            status: u16::try_from(r.status).unwrap_or(500),
            message: r.message,
        }),
    }
}

impl Error {
    /// A copy of an error that every part of a batch shares (for the variants a batch-wide
    /// failure takes).
    fn clone_for_retry(&self) -> Error {
        match self {
            Error::Unreachable(m) => Error::Unreachable(m.clone()),
            Error::NotReady(m) => Error::NotReady(m.clone()),
            Error::Refused(m) => Error::Refused(m.clone()),
            Error::BadRequest(m) => Error::BadRequest(m.clone()),
            Error::Overloaded { bytes } => Error::Overloaded { bytes: *bytes },
            Error::NotLeader { group, leader } => Error::NotLeader {
                group: *group,
                leader: leader.clone(),
            },
            other => Error::Unreachable(error_chain(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_always_lands_on_the_same_shard() {
        let t = TenantId::new("t").expect("tenant");
        let a = vec![
            ("service_name".to_owned(), "api".to_owned()),
            ("pod".into(), "p1".into()),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(
            shard_of(&t, &a, 8),
            shard_of(&t, &b, 8),
            "label order does not matter"
        );
        let spread: std::collections::BTreeSet<ShardId> = (0..200)
            .map(|i| shard_of(&t, &[("pod".into(), format!("p{i}"))], 4))
            .collect();
        assert_eq!(spread.len(), 4, "series spread over every shard");
        assert_eq!(shard_of(&t, &a, 1), ShardId(0));
    }

    #[test]
    fn part_results_keep_their_meaning() {
        let ok = part_result(encode_result(Ok(WriteStats {
            profiles: 1,
            samples: 2,
            bytes: 3,
            repeated: true,
        })))
        .expect("ok");
        assert_eq!(
            (ok.profiles, ok.samples, ok.bytes, ok.repeated),
            (1, 2, 3, true)
        );
        let bad =
            part_result(encode_result(Err(Error::BadRequest("label x".into())))).expect_err("bad");
        assert_eq!(bad.code().1.as_u16(), 400);
        assert!(bad.to_string().contains("label x"));
        let full = part_result(encode_result(Err(Error::LogFull { used: 9, budget: 5 })))
            .expect_err("full");
        assert_eq!(full.code().1.as_u16(), 503);
        assert!(
            !retryable(&full),
            "a full log is the client's to retry, later"
        );
        let moved = part_result(encode_result(Err(Error::NotLeader {
            group: crate::ids::GroupId::Meta,
            leader: Some((NodeId(2), "b:1".into())),
        })))
        .expect_err("moved");
        assert!(matches!(
            moved,
            Error::NotLeader {
                leader: Some((NodeId(2), _)),
                ..
            }
        ));
    }
}
