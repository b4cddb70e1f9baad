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
        )
    }
}

impl From<firn_storage::Error> for Error {
    fn from(source: firn_storage::Error) -> Self {
        Error::Storage { source }
    }
}
