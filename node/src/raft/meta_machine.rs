//! The meta group's state machine: [`MetaState`] in memory, applied command by command
//! ([`MetaState::apply`] is pure), published to the node through a watch channel after every
//! batch, and snapshotted whole as JSON (it is small: nodes and shard placements).
//!
//! ```text
//!  raft/meta/snapshot.json = {"meta": {log ids, membership}, "state": MetaState}
//! ```

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, EntryPayload, ErrorSubject, ErrorVerb, LogId, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::entry::{self, Command, LogIdJson, Response};
use super::{Entry, TypeConfig};
use crate::cluster::meta::MetaState;

type StorageResult<T> = Result<T, StorageError<u64>>;

const SNAPSHOT_FILE: &str = "snapshot.json";

fn snapshot_error(verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError<u64> {
    StorageIOError::new(
        ErrorSubject::Snapshot(None),
        verb,
        openraft::AnyError::error(e.to_string()),
    )
    .into()
}

#[derive(Serialize, Deserialize)]
struct SnapshotJson {
    snapshot_id: String,
    last_log_id: Option<LogIdJson>,
    membership_log_id: Option<LogIdJson>,
    membership: serde_json::Value,
    state: MetaState,
}

fn encode(meta: &SnapshotMeta<u64, BasicNode>, state: &MetaState) -> Vec<u8> {
    serde_json::to_vec(&SnapshotJson {
        snapshot_id: meta.snapshot_id.clone(),
        last_log_id: meta.last_log_id.as_ref().map(LogIdJson::from),
        membership_log_id: meta.last_membership.log_id().as_ref().map(LogIdJson::from),
        membership: serde_json::from_slice(&entry::encode_membership(
            meta.last_membership.membership(),
        ))
        .expect("membership is JSON"),
        state: state.clone(),
    })
    .expect("the meta state serialises")
}

fn decode(bytes: &[u8]) -> Result<(SnapshotMeta<u64, BasicNode>, MetaState), String> {
    let json: SnapshotJson =
        serde_json::from_slice(bytes).map_err(|e| format!("meta snapshot: {e}"))?;
    let membership = entry::decode_membership(json.membership.to_string().as_bytes())?;
    Ok((
        SnapshotMeta {
            last_log_id: json.last_log_id.map(Into::into),
            last_membership: StoredMembership::new(
                json.membership_log_id.map(Into::into),
                membership,
            ),
            snapshot_id: json.snapshot_id,
        },
        json.state,
    ))
}

struct State {
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    meta: MetaState,
}

struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    published: watch::Sender<Arc<MetaState>>,
}

impl Shared {
    fn publish(&self, state: &State) {
        // Every change bumps the version.
        if self.published.borrow().version != state.meta.version {
            self.published.send_replace(Arc::new(state.meta.clone()));
        }
    }

    fn write_snapshot(&self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = self.dir.join("snapshot.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    fn read_snapshot(&self) -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading the meta snapshot failed: {e}")),
        }
    }
}

/// The meta group's state machine.
pub struct MetaMachine {
    shared: Arc<Shared>,
}

impl MetaMachine {
    /// Loads the snapshot in `dir`, if any (openraft re-applies the committed log after it).
    pub fn open(dir: &Path) -> Result<(Self, watch::Receiver<Arc<MetaState>>), crate::Error> {
        std::fs::create_dir_all(dir).map_err(|source| crate::Error::DataDir {
            path: dir.to_owned(),
            source,
        })?;
        let (published, watcher) = watch::channel(Arc::new(MetaState::default()));
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            state: Mutex::new(State {
                applied: None,
                membership: StoredMembership::default(),
                meta: MetaState::default(),
            }),
            published,
        });
        if let Some(bytes) = shared.read_snapshot().map_err(crate::Error::Log)? {
            let (meta, state) = decode(&bytes).map_err(crate::Error::Log)?;
            let mut s = shared.state.lock().expect("meta state lock poisoned");
            s.applied = meta.last_log_id;
            s.membership = meta.last_membership;
            s.meta = state;
            shared.publish(&s);
        }
        Ok((Self { shared }, watcher))
    }
}

impl RaftStateMachine<TypeConfig> for MetaMachine {
    type SnapshotBuilder = MetaSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let state = self.shared.state.lock().expect("meta state lock poisoned");
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut state = self.shared.state.lock().expect("meta state lock poisoned");
        let mut responses = Vec::new();
        for e in entries {
            let response = match e.payload {
                EntryPayload::Blank => Ok(Default::default()),
                EntryPayload::Membership(m) => {
                    state.membership = StoredMembership::new(Some(e.log_id), m);
                    Ok(Default::default())
                }
                EntryPayload::Normal(Command::Meta(command)) => {
                    let applied = state.meta.apply(&command);
                    if let Err(why) = &applied {
                        tracing::debug!(index = e.log_id.index, %why, "meta command refused");
                    }
                    applied.map(|()| Default::default())
                }
                EntryPayload::Normal(other) => {
                    Err(format!("{other:?} is not a command of the meta group"))
                }
            };
            state.applied = Some(e.log_id);
            responses.push(response);
        }
        self.shared.publish(&state);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> MetaSnapshotBuilder {
        let state = self.shared.state.lock().expect("meta state lock poisoned");
        MetaSnapshotBuilder {
            shared: self.shared.clone(),
            applied: state.applied,
            membership: state.membership.clone(),
            meta: state.meta.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let (_, meta_state) = decode(&bytes).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        self.shared
            .write_snapshot(&bytes)
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        let mut state = self.shared.state.lock().expect("meta state lock poisoned");
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.meta = meta_state;
        self.shared.publish(&state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let Some(bytes) = self
            .shared
            .read_snapshot()
            .map_err(|e| snapshot_error(ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let (meta, _) = decode(&bytes).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// Builds a snapshot of the meta state as it was when the builder was made.
pub struct MetaSnapshotBuilder {
    shared: Arc<Shared>,
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    meta: MetaState,
}

impl RaftSnapshotBuilder<TypeConfig> for MetaSnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "meta-{}-{}",
                self.applied.map_or(0, |a| a.leader_id.term),
                self.applied.map_or(0, |a| a.index)
            ),
        };
        let bytes = encode(&meta, &self.meta);
        let shared = self.shared.clone();
        let written = bytes.clone();
        tokio::task::spawn_blocking(move || shared.write_snapshot(&written))
            .await
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}
