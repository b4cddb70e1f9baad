//! The query crate's error. Client mistakes (selectors, SQL, limits) are told apart from
//! failures of the engine so a server answers 400, 422 or 500 from one function.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("selector {selector:?}, at byte {position}: {message}")]
    Selector {
        selector: String,
        position: usize,
        message: String,
    },

    #[error("invalid query: {0}")]
    InvalidQuery(String),

    #[error("query needs more than its memory limit of {limit} bytes: {message}")]
    MemoryLimit { limit: usize, message: String },

    /// A tenant's limit (its name in the message).
    #[error("{0}")]
    Limit(String),

    #[error("query returned more than {limit} rows; add a LIMIT or narrow the query")]
    TooManyRows { limit: usize },

    #[error("query ran longer than its limit of {seconds} s")]
    Timeout { seconds: u64 },

    #[error("SQL is read-only: {0}")]
    ReadOnly(String),

    #[error("query execution failed")]
    Execution {
        source: datafusion::error::DataFusionError,
    },

    #[error("reading storage failed")]
    Storage { source: firn_storage::Error },

    /// No replica of a shard could answer (all down, partitioned or behind); worth a retry.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::Selector { .. }
                | Error::InvalidQuery(_)
                | Error::MemoryLimit { .. }
                | Error::TooManyRows { .. }
                | Error::Timeout { .. }
                | Error::ReadOnly(_)
                | Error::Limit(_)
        )
    }
}

impl Error {
    /// Storage could not be read (the object store is down or failing), here or in a failed
    /// execution's sources: worth a retry, not a bug.
    pub fn is_storage_unavailable(&self) -> bool {
        if matches!(self, Error::Unavailable(_)) {
            return true;
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = source {
            if let Some(s) = e.downcast_ref::<firn_storage::Error>()
                && s.is_object_store()
            {
                return true;
            }
            if e.downcast_ref::<object_store::Error>().is_some() {
                return true;
            }
            source = e.source();
        }
        false
    }
}

impl From<firn_storage::Error> for Error {
    fn from(source: firn_storage::Error) -> Self {
        Error::Storage { source }
    }
}
