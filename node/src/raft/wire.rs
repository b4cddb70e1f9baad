//! openraft's messages on the wire between nodes: protobuf (prost) messages converted to and
//! from openraft's types here and nowhere else. Entries travel in their log encoding
//! (`raft::entry`), so a follower stores exactly the bytes its leader logged.

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{LogId, SnapshotMeta, SnapshotSegmentId, StoredMembership, Vote};
use prost::Message;

use super::{TypeConfig, entry};

/// The Raft RPCs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcKind {
    AppendEntries = 1,
    Vote = 2,
    InstallSnapshot = 3,
}

impl RpcKind {
    pub fn from_wire(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::AppendEntries),
            2 => Some(Self::Vote),
            3 => Some(Self::InstallSnapshot),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct LogIdPb {
    #[prost(uint64, tag = "1")]
    term: u64,
    #[prost(uint64, tag = "2")]
    node: u64,
    #[prost(uint64, tag = "3")]
    index: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct VotePb {
    #[prost(uint64, tag = "1")]
    term: u64,
    #[prost(uint64, tag = "2")]
    node: u64,
    #[prost(bool, tag = "3")]
    committed: bool,
}

#[derive(Clone, PartialEq, Message)]
struct EntryPb {
    #[prost(uint64, tag = "1")]
    index: u64,
    /// Decoded as a slice of the message's buffer: an entry's record is not copied again.
    #[prost(bytes = "bytes", tag = "2")]
    bytes: bytes::Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct AppendEntriesPb {
    #[prost(message, optional, tag = "1")]
    vote: Option<VotePb>,
    #[prost(message, optional, tag = "2")]
    prev_log_id: Option<LogIdPb>,
    #[prost(message, optional, tag = "3")]
    leader_commit: Option<LogIdPb>,
    #[prost(message, repeated, tag = "4")]
    entries: Vec<EntryPb>,
}

#[derive(Clone, PartialEq, Message)]
struct AppendEntriesReplyPb {
    /// 0 success, 1 partial success, 2 conflict, 3 higher vote.
    #[prost(uint32, tag = "1")]
    kind: u32,
    #[prost(message, optional, tag = "2")]
    matched: Option<LogIdPb>,
    #[prost(message, optional, tag = "3")]
    vote: Option<VotePb>,
}

#[derive(Clone, PartialEq, Message)]
struct VoteRequestPb {
    #[prost(message, optional, tag = "1")]
    vote: Option<VotePb>,
    #[prost(message, optional, tag = "2")]
    last_log_id: Option<LogIdPb>,
}

#[derive(Clone, PartialEq, Message)]
struct VoteReplyPb {
    #[prost(message, optional, tag = "1")]
    vote: Option<VotePb>,
    #[prost(bool, tag = "2")]
    granted: bool,
    #[prost(message, optional, tag = "3")]
    last_log_id: Option<LogIdPb>,
}

#[derive(Clone, PartialEq, Message)]
struct InstallSnapshotPb {
    #[prost(message, optional, tag = "1")]
    vote: Option<VotePb>,
    #[prost(message, optional, tag = "2")]
    last_log_id: Option<LogIdPb>,
    #[prost(message, optional, tag = "3")]
    membership_log_id: Option<LogIdPb>,
    /// The membership in the log's JSON form.
    #[prost(bytes = "vec", tag = "4")]
    membership: Vec<u8>,
    #[prost(string, tag = "5")]
    snapshot_id: String,
    #[prost(uint64, tag = "6")]
    offset: u64,
    #[prost(bytes = "vec", tag = "7")]
    data: Vec<u8>,
    #[prost(bool, tag = "8")]
    done: bool,
}

/// A reply: the answer's bytes, or why the remote group refused.
#[derive(Clone, PartialEq, Message)]
pub struct ReplyPb {
    #[prost(bytes = "vec", tag = "1")]
    ok: Vec<u8>,
    #[prost(string, optional, tag = "2")]
    error: Option<String>,
    /// A snapshot chunk out of order: the segment the follower expected.
    #[prost(message, optional, tag = "3")]
    mismatch: Option<MismatchPb>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MismatchPb {
    #[prost(string, tag = "1")]
    expect_id: String,
    #[prost(uint64, tag = "2")]
    expect_offset: u64,
    #[prost(string, tag = "3")]
    got_id: String,
    #[prost(uint64, tag = "4")]
    got_offset: u64,
}

fn log_id_pb(id: &LogId<u64>) -> LogIdPb {
    LogIdPb {
        term: id.leader_id.term,
        node: id.leader_id.node_id,
        index: id.index,
    }
}

fn log_id(pb: LogIdPb) -> LogId<u64> {
    LogId::new(openraft::CommittedLeaderId::new(pb.term, pb.node), pb.index)
}

fn vote_pb(vote: &Vote<u64>) -> VotePb {
    VotePb {
        term: vote.leader_id.term,
        node: vote.leader_id.node_id,
        committed: vote.committed,
    }
}

fn vote(pb: Option<VotePb>) -> Result<Vote<u64>, String> {
    let pb = pb.ok_or("a message without its vote")?;
    Ok(if pb.committed {
        Vote::new_committed(pb.term, pb.node)
    } else {
        Vote::new(pb.term, pb.node)
    })
}

fn decode<M: Message + Default>(bytes: &[u8], what: &str) -> Result<M, String> {
    M::decode(bytes).map_err(|e| format!("{what} is not a valid message: {e}"))
}

pub fn encode_append(rpc: &AppendEntriesRequest<TypeConfig>) -> Vec<u8> {
    AppendEntriesPb {
        vote: Some(vote_pb(&rpc.vote)),
        prev_log_id: rpc.prev_log_id.as_ref().map(log_id_pb),
        leader_commit: rpc.leader_commit.as_ref().map(log_id_pb),
        entries: rpc
            .entries
            .iter()
            .map(|e| EntryPb {
                index: e.log_id.index,
                bytes: entry::encode(e).into(),
            })
            .collect(),
    }
    .encode_to_vec()
}

pub fn decode_append(bytes: bytes::Bytes) -> Result<AppendEntriesRequest<TypeConfig>, String> {
    let pb = AppendEntriesPb::decode(bytes)
        .map_err(|e| format!("AppendEntries is not a valid message: {e}"))?;
    Ok(AppendEntriesRequest {
        vote: vote(pb.vote)?,
        prev_log_id: pb.prev_log_id.map(log_id),
        leader_commit: pb.leader_commit.map(log_id),
        entries: pb
            .entries
            .into_iter()
            .map(|e| entry::decode(e.index, e.bytes))
            .collect::<Result<_, _>>()?,
    })
}

pub fn encode_append_reply(reply: &AppendEntriesResponse<u64>) -> Vec<u8> {
    let (kind, matched, vote) = match reply {
        AppendEntriesResponse::Success => (0, None, None),
        AppendEntriesResponse::PartialSuccess(m) => (1, m.as_ref().map(log_id_pb), None),
        AppendEntriesResponse::Conflict => (2, None, None),
        AppendEntriesResponse::HigherVote(v) => (3, None, Some(vote_pb(v))),
    };
    AppendEntriesReplyPb {
        kind,
        matched,
        vote,
    }
    .encode_to_vec()
}

pub fn decode_append_reply(bytes: &[u8]) -> Result<AppendEntriesResponse<u64>, String> {
    let pb: AppendEntriesReplyPb = decode(bytes, "AppendEntries reply")?;
    Ok(match pb.kind {
        0 => AppendEntriesResponse::Success,
        1 => AppendEntriesResponse::PartialSuccess(pb.matched.map(log_id)),
        2 => AppendEntriesResponse::Conflict,
        3 => AppendEntriesResponse::HigherVote(vote(pb.vote)?),
        k => return Err(format!("AppendEntries reply of unknown kind {k}")),
    })
}

pub fn encode_vote(rpc: &VoteRequest<u64>) -> Vec<u8> {
    VoteRequestPb {
        vote: Some(vote_pb(&rpc.vote)),
        last_log_id: rpc.last_log_id.as_ref().map(log_id_pb),
    }
    .encode_to_vec()
}

pub fn decode_vote(bytes: &[u8]) -> Result<VoteRequest<u64>, String> {
    let pb: VoteRequestPb = decode(bytes, "Vote")?;
    Ok(VoteRequest {
        vote: vote(pb.vote)?,
        last_log_id: pb.last_log_id.map(log_id),
    })
}

pub fn encode_vote_reply(reply: &VoteResponse<u64>) -> Vec<u8> {
    VoteReplyPb {
        vote: Some(vote_pb(&reply.vote)),
        granted: reply.vote_granted,
        last_log_id: reply.last_log_id.as_ref().map(log_id_pb),
    }
    .encode_to_vec()
}

pub fn decode_vote_reply(bytes: &[u8]) -> Result<VoteResponse<u64>, String> {
    let pb: VoteReplyPb = decode(bytes, "Vote reply")?;
    Ok(VoteResponse {
        vote: vote(pb.vote)?,
        vote_granted: pb.granted,
        last_log_id: pb.last_log_id.map(log_id),
    })
}

pub fn encode_snapshot(rpc: &InstallSnapshotRequest<TypeConfig>) -> Vec<u8> {
    InstallSnapshotPb {
        vote: Some(vote_pb(&rpc.vote)),
        last_log_id: rpc.meta.last_log_id.as_ref().map(log_id_pb),
        membership_log_id: rpc.meta.last_membership.log_id().as_ref().map(log_id_pb),
        membership: entry::encode_membership(rpc.meta.last_membership.membership()),
        snapshot_id: rpc.meta.snapshot_id.clone(),
        offset: rpc.offset,
        data: rpc.data.clone(),
        done: rpc.done,
    }
    .encode_to_vec()
}

pub fn decode_snapshot(bytes: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, String> {
    let pb: InstallSnapshotPb = decode(bytes, "InstallSnapshot")?;
    Ok(InstallSnapshotRequest {
        vote: vote(pb.vote)?,
        meta: SnapshotMeta {
            last_log_id: pb.last_log_id.map(log_id),
            last_membership: StoredMembership::new(
                pb.membership_log_id.map(log_id),
                entry::decode_membership(&pb.membership)?,
            ),
            snapshot_id: pb.snapshot_id,
        },
        offset: pb.offset,
        data: pb.data,
        done: pb.done,
    })
}

pub fn encode_snapshot_reply(reply: &InstallSnapshotResponse<u64>) -> Vec<u8> {
    vote_pb(&reply.vote).encode_to_vec()
}

pub fn decode_snapshot_reply(bytes: &[u8]) -> Result<InstallSnapshotResponse<u64>, String> {
    Ok(InstallSnapshotResponse {
        vote: vote(Some(decode(bytes, "InstallSnapshot reply")?))?,
    })
}

/// A successful reply.
pub fn ok(bytes: Vec<u8>) -> Vec<u8> {
    ReplyPb {
        ok: bytes,
        error: None,
        mismatch: None,
    }
    .encode_to_vec()
}

/// A refusal: openraft's error, as text (the mismatch of a snapshot chunk kept whole, since
/// the leader restarts the stream on it).
pub fn refused<E: std::fmt::Display>(e: &RaftError<u64, E>) -> Vec<u8> {
    ReplyPb {
        ok: Vec::new(),
        error: Some(e.to_string()),
        mismatch: None,
    }
    .encode_to_vec()
}

/// A message that could not be decoded.
pub fn malformed(message: &str) -> Vec<u8> {
    ReplyPb {
        ok: Vec::new(),
        error: Some(message.to_owned()),
        mismatch: None,
    }
    .encode_to_vec()
}

pub fn snapshot_refused(e: &RaftError<u64, InstallSnapshotError>) -> Vec<u8> {
    let mismatch = match e {
        RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)) => Some(MismatchPb {
            expect_id: m.expect.id.clone(),
            expect_offset: m.expect.offset,
            got_id: m.got.id.clone(),
            got_offset: m.got.offset,
        }),
        _ => None,
    };
    ReplyPb {
        ok: Vec::new(),
        error: Some(e.to_string()),
        mismatch,
    }
    .encode_to_vec()
}

/// What a reply says: the answer's bytes, or the remote refusal.
#[derive(Debug)]
pub enum Reply {
    Ok(Vec<u8>),
    Refused(String),
    Mismatch(SnapshotMismatch),
}

pub fn decode_reply(bytes: &[u8]) -> Result<Reply, String> {
    let pb: ReplyPb = decode(bytes, "Raft reply")?;
    Ok(match (pb.mismatch, pb.error) {
        (Some(m), _) => Reply::Mismatch(SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: m.expect_id,
                offset: m.expect_offset,
            },
            got: SnapshotSegmentId {
                id: m.got_id,
                offset: m.got_offset,
            },
        }),
        (None, Some(e)) => Reply::Refused(e),
        (None, None) => Reply::Ok(pb.ok),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::EntryPayload;

    #[test]
    fn messages_round_trip() {
        let id = |t, n, i| LogId::new(openraft::CommittedLeaderId::new(t, n), i);
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 2),
            prev_log_id: Some(id(2, 1, 9)),
            leader_commit: Some(id(3, 2, 10)),
            entries: vec![openraft::Entry {
                log_id: id(3, 2, 10),
                payload: EntryPayload::Normal(super::super::Command::FlushedThrough(7)),
            }],
        };
        let back = decode_append(encode_append(&append).into()).expect("decode");
        assert_eq!(back.vote, append.vote);
        assert_eq!(back.prev_log_id, append.prev_log_id);
        assert_eq!(back.leader_commit, append.leader_commit);
        assert_eq!(back.entries.len(), 1);
        assert_eq!(back.entries[0].log_id, id(3, 2, 10));
        for reply in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(id(1, 1, 4))),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new(9, 3)),
        ] {
            let back = decode_append_reply(&encode_append_reply(&reply)).expect("decode");
            assert_eq!(back, reply);
        }
        let request = VoteRequest::new(Vote::new(4, 1), Some(id(3, 2, 8)));
        assert_eq!(
            decode_vote(&encode_vote(&request)).expect("decode"),
            request
        );
        let reply = VoteResponse {
            vote: Vote::new(4, 1),
            vote_granted: true,
            last_log_id: None,
        };
        assert_eq!(
            decode_vote_reply(&encode_vote_reply(&reply)).expect("decode"),
            reply
        );
        assert!(decode_append(bytes::Bytes::from_static(b"\xff\xff\xff")).is_err());
        assert!(matches!(
            decode_reply(&ok(vec![1, 2])).expect("reply"),
            Reply::Ok(b) if b == [1, 2]
        ));
    }
}
