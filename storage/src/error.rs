//! The storage crate's error: one variant per failing operation, each carrying its context.
//! Client errors (bad input, limits) name the field and the limit; [`Error::is_client_error`]
//! and [`Error::is_overload`] let a server pick 4xx, 429 or 503 without matching every variant.

use crate::ids::{BlockId, SeqNo};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "tenant id {tenant:?} is not valid: use 1 to {max} characters of A-Z a-z 0-9 ! - _ . * ' ( )"
    )]
    InvalidTenant { tenant: String, max: usize },

    #[error("block id {id:?} is not valid: use A-Z a-z 0-9 - _")]
    InvalidBlockId { id: String },

    #[error("gzip stream is corrupt or truncated")]
    Decompress { source: std::io::Error },

    #[error(
        "profile is larger than {limit} bytes decompressed, the limit is {limit} bytes \
         (max_profile_decompressed_bytes)"
    )]
    DecompressedTooLarge { limit: usize },

    #[error("profile is not a valid pprof protobuf")]
    ProfileDecode { source: prost::DecodeError },

    #[error("invalid pprof profile: {reason}")]
    InvalidProfile { reason: String },

    #[error("folded stacks line {line}: {reason}")]
    InvalidFolded { line: usize, reason: String },

    #[error("{reason}")]
    InvalidLabel { reason: String },

    /// A label past a length or count limit (the message names the limit).
    #[error("{reason}")]
    LabelLimit { reason: String },

    #[error("profile type {id:?} is not valid: {reason}")]
    InvalidProfileType { id: String, reason: String },

    #[error(
        "write of {needed} bytes refused: the buffer holds {used} bytes and its budget is {budget} bytes; \
         retry after the next flush"
    )]
    BufferFull {
        needed: usize,
        used: usize,
        budget: usize,
    },

    #[error("write sequence number {seq} is not greater than the last one applied, {last}")]
    SequenceNotIncreasing { seq: SeqNo, last: SeqNo },

    #[error("building Arrow data for {what} failed")]
    Arrow {
        what: &'static str,
        source: arrow::error::ArrowError,
    },

    #[error("encoding block {block} as Parquet failed")]
    EncodeBlock {
        block: BlockId,
        source: parquet::errors::ParquetError,
    },

    #[error("reading Parquet of block {block} failed")]
    ReadBlock {
        block: BlockId,
        source: parquet::errors::ParquetError,
    },

    #[error("upload of {key} failed")]
    Upload {
        key: String,
        source: object_store::Error,
    },

    #[error("download of {key} failed")]
    Download {
        key: String,
        source: object_store::Error,
    },

    #[error("deleting {key} failed")]
    Delete {
        key: String,
        source: object_store::Error,
    },

    #[error("listing {prefix} failed")]
    List {
        prefix: String,
        source: object_store::Error,
    },

    #[error("{key} already exists with different contents; refusing to overwrite it")]
    BlockConflict { key: String },

    #[error("{key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },

    /// A logged or replicated write that does not decode (it passed validation when it was
    /// admitted, so this is damage, not a client's mistake).
    #[error("a normalised write is damaged: {reason}")]
    CorruptWrite { reason: String },

    /// A broken invariant inside the store: a bug, reported rather than panicking.
    #[error("internal error: {0}")]
    Internal(&'static str),

    #[error("manifest {key} could not be encoded or decoded")]
    ManifestCodec {
        key: String,
        source: serde_json::Error,
    },
}

impl Error {
    /// True when the caller sent something wrong: a server answers 400 (or 413 for size limits).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidTenant { .. }
                | Error::Decompress { .. }
                | Error::DecompressedTooLarge { .. }
                | Error::ProfileDecode { .. }
                | Error::InvalidProfile { .. }
                | Error::InvalidFolded { .. }
                | Error::InvalidLabel { .. }
                | Error::LabelLimit { .. }
                | Error::InvalidProfileType { .. }
        )
    }

    /// True for input past a size or count limit (a tenant's limit, which an operator may
    /// raise): a server answers 429 with the limit named.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Error::LabelLimit { .. } | Error::DecompressedTooLarge { .. }
        )
    }

    /// True when the store refused work it could do later: a server answers 429 or 503 with
    /// `Retry-After`.
    pub fn is_overload(&self) -> bool {
        matches!(self, Error::BufferFull { .. })
    }

    /// The object store could not be reached or answered with an error: the request may
    /// succeed later.
    pub fn is_object_store(&self) -> bool {
        matches!(
            self,
            Error::Upload { .. }
                | Error::Download { .. }
                | Error::Delete { .. }
                | Error::List { .. }
        )
    }
}
