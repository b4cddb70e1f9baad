//! openraft's own storage test suite over the log store and state machine, and snapshots
//! that carry buffered writes from one state machine to another.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use firn_storage::manifest::Manifest;
use firn_storage::{Nanos, Payload, ProfileType, Store, StoreConfig, TenantId, WriteRequest};
use object_store::memory::InMemory;
use object_store::path::Path;
use openraft::StorageError;
use openraft::storage::RaftStateMachine;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use super::log_store::LogStore;
use super::network::{Transport, TransportError};
use super::state_machine::StateMachine;
use super::{RaftGroup, RpcKind, TypeConfig};
use crate::ids::{GroupId, NodeId};

fn empty_store() -> Arc<Store> {
    Arc::new(Store::with_manifest(
        Arc::new(InMemory::new()),
        Path::from(""),
        StoreConfig::default(),
        Manifest::default(),
    ))
}

fn open(dir: &std::path::Path, store: Arc<Store>) -> (LogStore, StateMachine) {
    let applied = Arc::new(AtomicU64::new(u64::MAX));
    let log = LogStore::open(&dir.join("log-store"), applied.clone()).expect("open log");
    let committed = log.committed();
    let (sm, _) =
        StateMachine::open(dir, store, log.reader(), applied, committed).expect("open state");
    (log, sm)
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = open(dir.path(), empty_store());
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft's storage suite passes");
}

fn write_request(text: &str) -> WriteRequest {
    WriteRequest {
        tenant: TenantId::new("t1").expect("tenant"),
        labels: vec![("service_name".into(), "api".into())],
        payload: Payload::Folded {
            text: bytes::Bytes::from(text.to_owned()),
            profile_type: ProfileType::parse("process_cpu:samples:count:cpu:nanoseconds")
                .expect("type"),
            delta: false,
            duration: Nanos(0),
        },
        received_at: Nanos(1_700_000_000_000_000_000),
    }
}

/// The network of a group of one: there is nobody to reach.
#[derive(Debug)]
struct Alone;

#[async_trait::async_trait]
impl Transport for Alone {
    async fn raft(
        &self,
        addr: &str,
        _target: u64,
        _group: GroupId,
        _kind: RpcKind,
        _body: Vec<u8>,
        _timeout: std::time::Duration,
    ) -> Result<Vec<u8>, TransportError> {
        Err(TransportError::Unreachable(format!(
            "{addr}: a group of one has no peers"
        )))
    }
}

/// A shard group of one member over `dir`, leading once started.
async fn start_alone(dir: &std::path::Path, store: Arc<Store>) -> RaftGroup {
    let group = RaftGroup::open_shard(
        dir,
        store,
        GroupId::Shard(firn_storage::ShardId(0)),
        NodeId(1),
        Arc::new(Alone),
    )
    .await
    .expect("open");
    if !group.is_initialized().await.expect("initialised?") {
        let me = std::collections::BTreeMap::from([(NodeId(1), "127.0.0.1:1".to_owned())]);
        group.initialize(&me).await.expect("initialise");
    }
    group
        .wait_leading(std::time::Duration::from_secs(30))
        .await
        .expect("leading");
    group
}

async fn write(node: &RaftGroup, store: &Store, text: &str, key: Option<&str>) {
    let normalized = store.normalize(write_request(text)).expect("normalize");
    let record = firn_storage::normalize::encode_normalized(&normalized);
    node.write(
        record.into(),
        Arc::new(super::Prepared::Local(normalized)),
        key.map(Arc::from),
    )
    .await
    .expect("write commits");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_of_raw_writes_from_an_earlier_version_still_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = empty_store();
    let node = start_alone(dir.path(), store.clone()).await;
    // An entry as the previous version logged a write: the request as the client sent it.
    let raw = crate::record::encode(&write_request("main;old 4\nmain;older 1\n"));
    let (_, applied) = node
        .propose(super::Command::Write {
            record: raw.into(),
            form: super::Record::Raw,
            normalized: None,
            key: Some(Arc::from("t1/old")),
        })
        .await
        .expect("commits");
    assert_eq!(applied.expect("applies").samples, 2);
    write(&node, &store, "main;new 1\n", None).await;
    assert_eq!(store.buffer_samples(), 3);
    node.shutdown().await;
    drop(node);
    let store = empty_store();
    let node = start_alone(dir.path(), store.clone()).await;
    assert_eq!(store.buffer_samples(), 3, "both kinds replay");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_carries_the_buffer_to_another_state_machine() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let leader_store = empty_store();
    let leader = start_alone(leader_dir.path(), leader_store.clone()).await;
    write(&leader, &leader_store, "main;work 5\nmain;idle 2\n", None).await;
    write(&leader, &leader_store, "main;work 3\n", None).await;
    assert_eq!(leader_store.buffer_samples(), 3);
    let applied = leader.status().applied_index;
    leader.compact(applied, 0).await.expect("snapshot");
    leader.shutdown().await;
    drop(leader);

    let bytes = std::fs::read(leader_dir.path().join("snapshot.bin")).expect("snapshot file");
    let meta = super::state_machine::snapshot_meta(&bytes).expect("snapshot meta");
    // Membership, the leader's blank entry, then the two writes.
    assert_eq!(meta.last_log_id.map(|l| l.index), Some(3));
    assert!(applied <= 3);

    let follower_dir = tempfile::tempdir().expect("tempdir");
    let follower_store = empty_store();
    let (follower_log, mut follower) = open(follower_dir.path(), follower_store.clone());
    follower
        .install_snapshot(&meta, Box::new(std::io::Cursor::new(bytes)))
        .await
        .expect("install");
    assert_eq!(follower_store.buffer_samples(), 3);
    assert_eq!(
        follower.applied_state().await.expect("state").0,
        meta.last_log_id
    );

    // The installed snapshot is the follower's state after a restart too.
    drop(follower);
    drop(follower_log);
    let restarted = empty_store();
    let (_log, mut follower) = open(follower_dir.path(), restarted.clone());
    assert_eq!(restarted.buffer_samples(), 3);
    assert_eq!(
        follower.applied_state().await.expect("state").0,
        meta.last_log_id
    );

    // And the leader restarts from its own snapshot and log.
    let store = empty_store();
    let leader = start_alone(leader_dir.path(), store.clone()).await;
    assert_eq!(store.buffer_samples(), 3);
    write(&leader, &store, "main;more 1\n", None).await;
    assert_eq!(store.buffer_samples(), 4);
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_write_with_its_key_counts_once_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = empty_store();
    let node = start_alone(dir.path(), store.clone()).await;
    write(&node, &store, "main;work 5\nmain;idle 2\n", Some("t1/k1")).await;
    write(&node, &store, "main;work 5\nmain;idle 2\n", Some("t1/k1")).await;
    assert_eq!(store.buffer_samples(), 2, "the retry added nothing");
    let applied = node.status().applied_index;
    node.compact(applied, 0).await.expect("snapshot");
    write(&node, &store, "main;work 5\nmain;idle 2\n", Some("t1/k1")).await;
    write(&node, &store, "main;other 1\n", Some("t1/k2")).await;
    assert_eq!(store.buffer_samples(), 3);
    node.shutdown().await;
    drop(node);

    // Rebuilt from the snapshot and the log, the keys decide the same way, and still hold.
    let store = empty_store();
    let node = start_alone(dir.path(), store.clone()).await;
    assert_eq!(store.buffer_samples(), 3);
    write(&node, &store, "main;work 5\nmain;idle 2\n", Some("t1/k1")).await;
    write(&node, &store, "main;other 1\n", Some("t1/k2")).await;
    assert_eq!(store.buffer_samples(), 3);
    write(&node, &store, "main;other 1\n", Some("t1/k3")).await;
    assert_eq!(store.buffer_samples(), 4, "a new key is a new write");
    node.shutdown().await;
}
