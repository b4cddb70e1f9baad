//! What the Raft group agrees on, and how an entry is written in the log and in snapshots.
//!
//! ```text
//!  entry = [kind u8][term u64 LE][leader node u64 LE][body]
//!  kind 0 blank · 1 write (body = the write as it arrived, `record::encode`)
//!       2 block flushed (body = the block's metadata, JSON) · 3 membership (JSON)
//!       4 write with an idempotency key (body = [key length u16 LE][key][record])
//!       5 flushed through (body = sequence number u64 LE)
//!       6 meta command (body = JSON)
//!       7 normalised write (body = [key length u16 LE][key][firn_storage's normalised write])
//! ```
//!
//! Kinds 1 and 4 (the write as the client sent it) are what logs written before normalised
//! writes hold; they still replay, normalised again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use firn_storage::block::BlockMeta;
use firn_storage::buffer::WriteStats;
use firn_storage::compact::CompactionJob;
use firn_storage::normalize::Normalized;
use firn_storage::symbols::PackedSymbols;
use firn_storage::{BlockId, Nanos};
use openraft::{BasicNode, EntryPayload, LogId, Membership};
use serde::{Deserialize, Serialize};

use super::Entry;
use crate::cluster::meta::MetaCommand;

/// A normalised write in memory, as the leader holds it: built by normalising (on the node
/// that admitted it) or decoded from a forwarded record.
#[derive(Debug)]
pub enum Prepared {
    Local(Normalized),
    Packed(Normalized<PackedSymbols>),
}

/// What a write's record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// The normalised write (`firn_storage::normalize::encode_normalized`).
    Normalized,
    /// The write as the client sent it (`crate::record`): logs of earlier versions.
    Raw,
}

/// A command the state machine applies.
#[derive(Clone)]
pub enum Command {
    /// A write. On the leader, `normalized` carries it in memory so applying it decodes
    /// nothing; it is never written to the log.
    Write {
        record: Bytes,
        form: Record,
        normalized: Option<Arc<Prepared>>,
        /// The client's idempotency key: a write whose key was applied recently is answered
        /// with the first one's result instead of being applied again.
        key: Option<Arc<str>>,
    },
    /// A block is in the object store holding every write up to its last sequence number.
    BlockFlushed(Box<BlockMeta>),
    /// Every write up to this sequence number added no rows the buffer still holds: the log
    /// may be purged through it without a block.
    FlushedThrough(u64),
    /// A change to the meta group's state (membership, placement, settings).
    Meta(MetaCommand),
    /// Blocks leave the manifest (past their tenants' retention); the leader then deletes
    /// their objects.
    BlocksDropped(Vec<BlockId>),
    /// A compaction's swap: the job's tenant leaves its inputs, `output` joins the manifest
    /// (nothing changes unless every input still holds the tenant); emptied inputs are
    /// retired at `at`.
    BlocksCompacted(Box<Compacted>),
    /// Retired blocks whose objects are deleted.
    RetiredPurged(Vec<BlockId>),
}

/// The body of [`Command::BlocksCompacted`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Compacted {
    pub job: CompactionJob,
    pub output: BlockMeta,
    pub at: Nanos,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Write { record, .. } => write!(f, "Write({} bytes)", record.len()),
            Command::BlockFlushed(meta) => write!(f, "BlockFlushed({})", meta.id),
            Command::FlushedThrough(seq) => write!(f, "FlushedThrough({seq})"),
            Command::Meta(command) => write!(f, "Meta({command:?})"),
            Command::BlocksDropped(ids) => write!(f, "BlocksDropped({})", ids.len()),
            Command::BlocksCompacted(c) => write!(f, "BlocksCompacted({})", c.output.id),
            Command::RetiredPurged(ids) => write!(f, "RetiredPurged({})", ids.len()),
        }
    }
}

/// What applying a command answered: a write's stats, or why it could not apply (the same
/// on every replica, as the command is).
pub type Response = Result<WriteStats, String>;

const BLANK: u8 = 0;
const WRITE: u8 = 1;
const BLOCK: u8 = 2;
const MEMBERSHIP: u8 = 3;
const KEYED_WRITE: u8 = 4;
const FLUSHED_THROUGH: u8 = 5;
const META: u8 = 6;
const NORMALIZED_WRITE: u8 = 7;
const BLOCKS_DROPPED: u8 = 8;
const BLOCKS_COMPACTED: u8 = 9;
const RETIRED_PURGED: u8 = 10;

/// The longest idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;
const HEADER: usize = 17;

#[derive(Serialize, Deserialize)]
struct MembershipJson {
    configs: Vec<BTreeSet<u64>>,
    nodes: BTreeMap<u64, String>,
}

/// An entry as bytes, written in one buffer (a write's record is copied once).
pub fn encode(entry: &Entry) -> Vec<u8> {
    let body_hint = match &entry.payload {
        EntryPayload::Normal(Command::Write { record, key, .. }) => {
            2 + key.as_deref().map_or(0, str::len) + record.len()
        }
        _ => 64,
    };
    let mut out = Vec::with_capacity(HEADER + body_hint);
    // The kind byte is set once the body says what it is.
    out.push(0);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    let keyed = |out: &mut Vec<u8>, key: &str, record: &[u8]| {
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(record);
    };
    out[0] = match &entry.payload {
        EntryPayload::Blank => BLANK,
        EntryPayload::Normal(Command::Write {
            record,
            form: Record::Normalized,
            key,
            ..
        }) => {
            keyed(&mut out, key.as_deref().unwrap_or(""), record);
            NORMALIZED_WRITE
        }
        EntryPayload::Normal(Command::Write {
            record,
            form: Record::Raw,
            key: None,
            ..
        }) => {
            out.extend_from_slice(record);
            WRITE
        }
        EntryPayload::Normal(Command::Write {
            record,
            form: Record::Raw,
            key: Some(key),
            ..
        }) => {
            keyed(&mut out, key, record);
            KEYED_WRITE
        }
        EntryPayload::Normal(Command::BlockFlushed(meta)) => {
            serde_json::to_writer(&mut out, meta).expect("block metadata serialises");
            BLOCK
        }
        EntryPayload::Normal(Command::FlushedThrough(seq)) => {
            out.extend_from_slice(&seq.to_le_bytes());
            FLUSHED_THROUGH
        }
        EntryPayload::Normal(Command::Meta(command)) => {
            serde_json::to_writer(&mut out, command).expect("meta commands serialise");
            META
        }
        EntryPayload::Normal(Command::BlocksDropped(ids)) => {
            serde_json::to_writer(&mut out, ids).expect("block ids serialise");
            BLOCKS_DROPPED
        }
        EntryPayload::Normal(Command::BlocksCompacted(c)) => {
            serde_json::to_writer(&mut out, c).expect("a compaction serialises");
            BLOCKS_COMPACTED
        }
        EntryPayload::Normal(Command::RetiredPurged(ids)) => {
            serde_json::to_writer(&mut out, ids).expect("block ids serialise");
            RETIRED_PURGED
        }
        EntryPayload::Membership(m) => {
            out.extend_from_slice(&encode_membership(m));
            MEMBERSHIP
        }
    };
    out
}

/// The entry at `index` from its bytes (a write's record keeps sharing them).
pub fn decode(index: u64, bytes: impl Into<Bytes>) -> Result<Entry, String> {
    let bytes: Bytes = bytes.into();
    let log_id = log_id(index, &bytes)?;
    let kind = bytes[0];
    let body = &bytes[HEADER..];
    let payload = match kind {
        BLANK => EntryPayload::Blank,
        WRITE => EntryPayload::Normal(Command::Write {
            record: bytes.slice(HEADER..),
            form: Record::Raw,
            normalized: None,
            key: None,
        }),
        KEYED_WRITE | NORMALIZED_WRITE => {
            let len = body
                .get(..2)
                .map(|l| u16::from_le_bytes([l[0], l[1]]) as usize)
                .ok_or_else(|| format!("entry {index}: keyed write without a key length"))?;
            let key = body
                .get(2..2 + len)
                .and_then(|k| std::str::from_utf8(k).ok())
                .ok_or_else(|| format!("entry {index}: bad idempotency key"))?;
            let form = if kind == NORMALIZED_WRITE {
                Record::Normalized
            } else {
                Record::Raw
            };
            EntryPayload::Normal(Command::Write {
                key: (!key.is_empty() || form == Record::Raw).then(|| Arc::from(key)),
                record: bytes.slice(HEADER + 2 + len..),
                form,
                normalized: None,
            })
        }
        BLOCK => EntryPayload::Normal(Command::BlockFlushed(Box::new(
            serde_json::from_slice(body)
                .map_err(|e| format!("entry {index}: bad block metadata: {e}"))?,
        ))),
        MEMBERSHIP => EntryPayload::Membership(
            decode_membership(body).map_err(|e| format!("entry {index}: {e}"))?,
        ),
        FLUSHED_THROUGH => EntryPayload::Normal(Command::FlushedThrough(u64::from_le_bytes(
            body.try_into()
                .map_err(|_| format!("entry {index}: bad flushed-through body"))?,
        ))),
        META => EntryPayload::Normal(Command::Meta(
            serde_json::from_slice(body)
                .map_err(|e| format!("entry {index}: bad meta command: {e}"))?,
        )),
        BLOCKS_DROPPED => EntryPayload::Normal(Command::BlocksDropped(
            serde_json::from_slice(body)
                .map_err(|e| format!("entry {index}: bad dropped block ids: {e}"))?,
        )),
        BLOCKS_COMPACTED => EntryPayload::Normal(Command::BlocksCompacted(Box::new(
            serde_json::from_slice(body)
                .map_err(|e| format!("entry {index}: bad compaction: {e}"))?,
        ))),
        RETIRED_PURGED => EntryPayload::Normal(Command::RetiredPurged(
            serde_json::from_slice(body)
                .map_err(|e| format!("entry {index}: bad purged block ids: {e}"))?,
        )),
        other => return Err(format!("entry {index}: unknown kind {other}")),
    };
    Ok(Entry { log_id, payload })
}

/// The log id of the entry at `index`, from its header alone.
pub fn log_id(index: u64, bytes: &[u8]) -> Result<LogId<u64>, String> {
    if bytes.len() < HEADER {
        return Err(format!(
            "entry {index}: {} bytes, shorter than its header",
            bytes.len()
        ));
    }
    let term = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let node = u64::from_le_bytes(bytes[9..17].try_into().expect("8 bytes"));
    Ok(LogId::new(
        openraft::CommittedLeaderId::new(term, node),
        index,
    ))
}

pub fn encode_membership(m: &Membership<u64, BasicNode>) -> Vec<u8> {
    serde_json::to_vec(&MembershipJson {
        configs: m.get_joint_config().clone(),
        nodes: m.nodes().map(|(id, n)| (*id, n.addr.clone())).collect(),
    })
    .expect("membership serialises")
}

pub fn decode_membership(bytes: &[u8]) -> Result<Membership<u64, BasicNode>, String> {
    let m: MembershipJson =
        serde_json::from_slice(bytes).map_err(|e| format!("bad membership: {e}"))?;
    let nodes: BTreeMap<u64, BasicNode> = m
        .nodes
        .into_iter()
        .map(|(id, addr)| (id, BasicNode::new(addr)))
        .collect();
    Ok(Membership::new(m.configs, nodes))
}

/// Log ids and votes as small JSON documents, for the files that hold them.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogIdJson {
    pub term: u64,
    pub node: u64,
    pub index: u64,
}

impl From<&LogId<u64>> for LogIdJson {
    fn from(id: &LogId<u64>) -> Self {
        Self {
            term: id.leader_id.term,
            node: id.leader_id.node_id,
            index: id.index,
        }
    }
}

impl From<LogIdJson> for LogId<u64> {
    fn from(id: LogIdJson) -> Self {
        LogId::new(openraft::CommittedLeaderId::new(id.term, id.node), id.index)
    }
}

/// The bytes an entry holds, for bounding caches.
pub fn size(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(Command::Write { record, key, .. }) => {
            HEADER + record.len() + key.as_ref().map_or(0, |k| 2 + k.len())
        }
        _ => HEADER + 256,
    }
}
