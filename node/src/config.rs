//! `firn serve` configuration: flags, each also an environment variable, and an optional TOML
//! file with the same keys (flags and environment win over the file). [`ServeArgs::resolve`]
//! checks everything before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

pub use crate::tenancy::auth::AuthMode;
use serde::Deserialize;

/// Options of `firn serve`.
#[derive(Args, Clone, Debug, Default)]
pub struct ServeArgs {
    /// A TOML file with any of the keys below (snake_case: `data_dir`, `listen`, ...).
    #[arg(long, env = "FIRN_CONFIG")]
    pub config: Option<PathBuf>,

    /// Directory for the Raft log, vote and snapshot and, by default, the object store.
    /// [default: ./firn-data]
    #[arg(long, env = "FIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to serve HTTP/1.1 and h2c (gRPC) on. [default: 0.0.0.0:4040]
    #[arg(long, env = "FIRN_LISTEN")]
    pub listen: Option<String>,

    /// Where blocks go: `file:///path`, `s3://bucket/prefix` or `memory://`.
    /// [default: file://DATA_DIR/objects]
    #[arg(long, env = "FIRN_OBJECT_STORE")]
    pub object_store: Option<String>,

    /// S3-compatible endpoint URL (MinIO, moto, ...); credentials come from `AWS_*` variables.
    #[arg(long, env = "FIRN_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region. [default: us-east-1]
    #[arg(long, env = "FIRN_S3_REGION")]
    pub s3_region: Option<String>,

    /// Buffer memory budget in bytes; writes past it get 503 until a flush. [default: 1 GiB]
    #[arg(long, env = "FIRN_BUFFER_BYTES")]
    pub buffer_bytes: Option<usize>,

    /// Flush the buffer into a block once it holds this many bytes. [default: 64 MiB]
    #[arg(long, env = "FIRN_FLUSH_BYTES")]
    pub flush_bytes: Option<usize>,

    /// Flush the buffer once its oldest write is this many seconds old. [default: 30]
    #[arg(long, env = "FIRN_FLUSH_INTERVAL_SECS")]
    pub flush_interval_secs: Option<u64>,

    /// Most bytes of Raft log not yet in blocks (an object-store outage fills it); past it
    /// writes get 503 with Retry-After. [default: 4 GiB]
    #[arg(long, env = "FIRN_LOG_BUDGET_BYTES")]
    pub log_budget_bytes: Option<u64>,

    /// Largest request body accepted, in bytes (before decompression). [default: 64 MiB]
    #[arg(long, env = "FIRN_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,

    /// Largest profile accepted after decompression, in bytes; a gzip bomb stops here.
    /// [default: 64 MiB]
    #[arg(long, env = "FIRN_MAX_PROFILE_BYTES")]
    pub max_profile_bytes: Option<usize>,

    /// Bytes of writes being decoded and committed at once, at most (request bodies as
    /// received); more wait up to 10 s, then get 503 with Retry-After. [default: 256 MiB]
    #[arg(long, env = "FIRN_MAX_INFLIGHT_WRITE_BYTES")]
    pub max_inflight_write_bytes: Option<usize>,

    /// How requests are authenticated: `none` trusts `X-Scope-OrgID` (tenant `anonymous`
    /// without it); `token` needs a token on every request. [default: none]
    #[arg(long, env = "FIRN_AUTH", value_enum)]
    pub auth: Option<AuthMode>,

    /// A file holding the bootstrap admin token (the operator's: any tenant, the admin API);
    /// `FIRN_ADMIN_TOKEN` may hold the token itself. Every node of a cluster needs the same.
    #[arg(long, env = "FIRN_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Seconds between checks for blocks past their tenants' retention. [default: 300]
    #[arg(long, env = "FIRN_RETENTION_CHECK_SECS")]
    pub retention_check_secs: Option<u64>,

    /// Seconds between writes of this node's usage records to the object store. [default: 60]
    #[arg(long, env = "FIRN_USAGE_FLUSH_SECS")]
    pub usage_flush_secs: Option<u64>,

    /// Bytes of block objects cached on local disk when the object store is remote (S3);
    /// 0 turns the cache off. [default: 8589934592 (8 GiB)]
    #[arg(long, env = "FIRN_CACHE_BYTES")]
    pub cache_bytes: Option<u64>,

    /// Where the block cache lives (emptied at start). [default: DATA_DIR/cache]
    #[arg(long, env = "FIRN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Seconds between compaction rounds on the shards this node leads. [default: 30]
    #[arg(long, env = "FIRN_COMPACTION_INTERVAL_SECS")]
    pub compaction_interval_secs: Option<u64>,

    /// Seconds a compacted-away block's objects are kept for queries still reading them.
    /// [default: 300]
    #[arg(long, env = "FIRN_COMPACTION_DELETE_DELAY_SECS")]
    pub compaction_delete_delay_secs: Option<u64>,

    /// Memory one compaction job may use, in bytes: it bounds the rows a job merges (a window
    /// with more becomes several blocks). [default: 256 MiB]
    #[arg(long, env = "FIRN_COMPACTION_MEMORY_BYTES")]
    pub compaction_memory_bytes: Option<u64>,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Validate the configuration, print it and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// How the node finds its cluster. With neither `--join` nor `--peers` it is a cluster of one.
#[derive(Args, Clone, Debug, Default)]
pub struct ClusterArgs {
    /// This node's id: unique in the cluster, never reused after the node is removed.
    /// [default: 1]
    #[arg(long, env = "FIRN_NODE_ID")]
    pub node_id: Option<u64>,

    /// The HOST:PORT other nodes reach this node at. [default: the listen address, or
    /// 127.0.0.1:PORT when listening on all interfaces]
    #[arg(long, env = "FIRN_ADVERTISE")]
    pub advertise: Option<String>,

    /// Join a running cluster through any of these nodes (HOST:PORT, comma-separated).
    #[arg(long, env = "FIRN_JOIN", value_delimiter = ',')]
    pub join: Option<Vec<String>>,

    /// Form a new cluster of exactly these nodes (HOST:PORT of each, this one included,
    /// comma-separated); it starts once every peer answers.
    #[arg(long, env = "FIRN_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<String>>,

    /// In a StatefulSet: this pod's name (`NAME-ORDINAL`, e.g. from the downward API). The
    /// node id is then ORDINAL + 1 unless `--node-id` says otherwise, and a pod whose address
    /// is not among `--peers` (one added by scaling up) joins through them.
    #[arg(long, env = "FIRN_STATEFULSET_POD")]
    pub statefulset_pod: Option<String>,

    /// Shard groups of a new cluster (fixed afterwards). [default: one per peer, 1 alone]
    #[arg(long, env = "FIRN_SHARDS")]
    pub shards: Option<u32>,

    /// Replicas of each shard in a new cluster; a cluster with fewer nodes holds one on each.
    /// [default: 3]
    #[arg(long, env = "FIRN_REPLICATION_FACTOR")]
    pub replication_factor: Option<u32>,
}

/// The TOML file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    object_store: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    buffer_bytes: Option<usize>,
    flush_bytes: Option<usize>,
    flush_interval_secs: Option<u64>,
    log_budget_bytes: Option<u64>,
    max_request_bytes: Option<usize>,
    max_profile_bytes: Option<usize>,
    max_inflight_write_bytes: Option<usize>,
    auth: Option<AuthMode>,
    admin_token_file: Option<PathBuf>,
    retention_check_secs: Option<u64>,
    usage_flush_secs: Option<u64>,
    compaction_interval_secs: Option<u64>,
    compaction_delete_delay_secs: Option<u64>,
    compaction_memory_bytes: Option<u64>,
    cache_bytes: Option<u64>,
    cache_dir: Option<PathBuf>,
    node_id: Option<u64>,
    advertise: Option<String>,
    statefulset_pod: Option<String>,
    join: Option<Vec<String>>,
    peers: Option<Vec<String>>,
    shards: Option<u32>,
    replication_factor: Option<u32>,
}

/// How this node meets its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    /// A cluster of one (or a node restarting in a cluster it already belongs to).
    Alone,
    /// Join a running cluster through these nodes.
    Join(Vec<String>),
    /// Form a cluster of exactly these nodes.
    Peers(Vec<String>),
}

/// The cluster part of a checked configuration.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: crate::ids::NodeId,
    /// A StatefulSet pod with no `--node-id`: on a fresh data directory, if its cluster exists
    /// already, it asks for its id, `node_id` (ordinal + 1) if no node ever had it.
    pub reserve_id: bool,
    pub advertise: String,
    pub membership: Membership,
    pub shards: u32,
    pub replication_factor: u32,
}

/// Where blocks are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectStoreUrl {
    File(PathBuf),
    S3 { bucket: String, prefix: String },
    Memory,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub object_store: ObjectStoreUrl,
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub buffer_bytes: usize,
    pub flush_bytes: usize,
    pub flush_interval: Duration,
    pub log_budget_bytes: u64,
    pub max_request_bytes: usize,
    pub max_profile_bytes: usize,
    pub max_inflight_write_bytes: usize,
    pub auth: AuthMode,
    pub admin_token: Option<Secret>,
    pub retention_check: Duration,
    pub usage_flush: Duration,
    pub compaction_interval: Duration,
    pub compaction_delete_delay: Duration,
    pub compaction_memory_bytes: u64,
    pub cache_bytes: u64,
    pub cache_dir: PathBuf,
    pub cluster: ClusterSettings,
}

/// A credential: shown as `<redacted>` when the settings are printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path} failed")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key} {value:?} is not valid: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

impl ServeArgs {
    /// Merges flags over the file over defaults, and checks the result.
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        let mut file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let cluster_file = FileConfig {
            node_id: file.node_id,
            advertise: file.advertise.take(),
            join: file.join.take(),
            peers: file.peers.take(),
            shards: file.shards,
            replication_factor: file.replication_factor,
            ..Default::default()
        };
        let data_dir = pick(self.data_dir.clone(), file.data_dir, "firn-data".into());
        let listen_text = pick(self.listen.clone(), file.listen, "0.0.0.0:4040".into());
        let listen: SocketAddr = listen_text.parse().map_err(|e| ConfigError::Invalid {
            key: "listen",
            value: listen_text.clone(),
            reason: format!("{e}; use HOST:PORT with an IP address, like 0.0.0.0:4040"),
        })?;
        let cluster = self.cluster.resolve(&cluster_file, listen)?;
        let object_store = match self.object_store.clone().or(file.object_store) {
            Some(url) => parse_object_store(&url)?,
            None => ObjectStoreUrl::File(absolute(&data_dir.join("objects"))),
        };
        let s3_endpoint = self.s3_endpoint.clone().or(file.s3_endpoint);
        if let Some(endpoint) = &s3_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                key: "s3-endpoint",
                value: endpoint.clone(),
                reason: "use an http:// or https:// URL".into(),
            });
        }
        let auth = pick(self.auth, file.auth, AuthMode::None);
        let admin_token = admin_token(
            self.admin_token_file.clone().or(file.admin_token_file),
            std::env::var("FIRN_ADMIN_TOKEN").ok(),
        )?;
        if auth == AuthMode::Token && admin_token.is_none() {
            return Err(ConfigError::Invalid {
                key: "auth",
                value: "token".into(),
                reason:
                    "--auth=token needs the admin token: --admin-token-file or FIRN_ADMIN_TOKEN"
                        .into(),
            });
        }
        let settings = Settings {
            auth,
            admin_token,
            retention_check: Duration::from_secs(pick(
                self.retention_check_secs,
                file.retention_check_secs,
                300,
            )),
            cache_bytes: pick(self.cache_bytes, file.cache_bytes, 8 << 30),
            cache_dir: self
                .cache_dir
                .clone()
                .or(file.cache_dir.clone())
                .unwrap_or_else(|| data_dir.join("cache")),
            compaction_interval: Duration::from_secs(pick(
                self.compaction_interval_secs,
                file.compaction_interval_secs,
                30,
            )),
            compaction_delete_delay: Duration::from_secs(pick(
                self.compaction_delete_delay_secs,
                file.compaction_delete_delay_secs,
                300,
            )),
            compaction_memory_bytes: pick(
                self.compaction_memory_bytes,
                file.compaction_memory_bytes,
                256 << 20,
            ),
            usage_flush: Duration::from_secs(pick(
                self.usage_flush_secs,
                file.usage_flush_secs,
                60,
            )),
            cluster,
            data_dir,
            listen,
            object_store,
            s3_endpoint,
            s3_region: pick(self.s3_region.clone(), file.s3_region, "us-east-1".into()),
            buffer_bytes: pick(self.buffer_bytes, file.buffer_bytes, 1 << 30),
            flush_bytes: pick(self.flush_bytes, file.flush_bytes, 64 << 20),
            flush_interval: Duration::from_secs(pick(
                self.flush_interval_secs,
                file.flush_interval_secs,
                30,
            )),
            log_budget_bytes: pick(self.log_budget_bytes, file.log_budget_bytes, 4 << 30),
            max_request_bytes: pick(self.max_request_bytes, file.max_request_bytes, 64 << 20),
            max_profile_bytes: pick(self.max_profile_bytes, file.max_profile_bytes, 64 << 20),
            max_inflight_write_bytes: pick(
                self.max_inflight_write_bytes,
                file.max_inflight_write_bytes,
                256 << 20,
            ),
        };
        settings.validate()?;
        Ok(settings)
    }
}

impl Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = |key: &'static str, value: u64| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    key,
                    value: "0".into(),
                    reason: "must be greater than zero".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("buffer-bytes", self.buffer_bytes as u64)?;
        positive("retention-check-secs", self.retention_check.as_secs())?;
        positive("usage-flush-secs", self.usage_flush.as_secs())?;
        positive(
            "compaction-interval-secs",
            self.compaction_interval.as_secs(),
        )?;
        positive("compaction-memory-bytes", self.compaction_memory_bytes)?;
        positive("flush-bytes", self.flush_bytes as u64)?;
        positive("flush-interval-secs", self.flush_interval.as_secs())?;
        positive("log-budget-bytes", self.log_budget_bytes)?;
        positive("max-request-bytes", self.max_request_bytes as u64)?;
        positive("max-profile-bytes", self.max_profile_bytes as u64)?;
        positive(
            "max-inflight-write-bytes",
            self.max_inflight_write_bytes as u64,
        )?;
        if self.flush_bytes > self.buffer_bytes {
            return Err(ConfigError::Invalid {
                key: "flush-bytes",
                value: self.flush_bytes.to_string(),
                reason: format!(
                    "must not exceed buffer-bytes ({}), or the buffer fills before it flushes",
                    self.buffer_bytes
                ),
            });
        }
        Ok(())
    }
}

impl ClusterArgs {
    fn resolve(
        &self,
        file: &FileConfig,
        listen: SocketAddr,
    ) -> Result<ClusterSettings, ConfigError> {
        let invalid = |key: &'static str, value: String, reason: &str| ConfigError::Invalid {
            key,
            value,
            reason: reason.to_owned(),
        };
        let ordinal = match self
            .statefulset_pod
            .as_ref()
            .or(file.statefulset_pod.as_ref())
        {
            Some(pod) => Some(pod_ordinal(pod).ok_or_else(|| {
                invalid(
                    "statefulset-pod",
                    pod.clone(),
                    "a StatefulSet pod's name ends in -ORDINAL, like firn-2",
                )
            })?),
            None => None,
        };
        let node_id = pick(self.node_id, file.node_id, ordinal.map_or(1, |o| o + 1));
        if node_id == 0 {
            return Err(invalid("node-id", "0".into(), "node ids start at 1"));
        }
        let join = non_empty(self.join.clone().or_else(|| file.join.clone()));
        let peers = non_empty(self.peers.clone().or_else(|| file.peers.clone()));
        let membership = match (join, peers) {
            (Some(j), Some(_)) => {
                return Err(invalid(
                    "join",
                    j.join(","),
                    "use --join to enter a running cluster or --peers to form a new one, not both",
                ));
            }
            (Some(j), None) => Membership::Join(check_addrs("join", j)?),
            (None, Some(p)) => Membership::Peers(check_addrs("peers", p)?),
            (None, None) => Membership::Alone,
        };
        let advertise = match self.advertise.clone().or_else(|| file.advertise.clone()) {
            Some(a) => check_addrs("advertise", vec![a])?.remove(0),
            None if listen.ip().is_unspecified() => {
                if membership != Membership::Alone {
                    return Err(invalid(
                        "advertise",
                        String::new(),
                        "a node listening on all interfaces needs --advertise HOST:PORT to join a cluster",
                    ));
                }
                format!("127.0.0.1:{}", listen.port())
            }
            None => listen.to_string(),
        };
        let membership = match membership {
            // A StatefulSet's --peers are the pods that formed the cluster (ordinals 0 to
            // peers - 1); a later pod joins through them. A founding pod whose address is
            // missing from them is a mistake, refused below.
            Membership::Peers(p)
                if ordinal.is_some_and(|o| o >= p.len() as u64) && !p.contains(&advertise) =>
            {
                Membership::Join(p)
            }
            m => m,
        };
        if let Membership::Peers(p) = &membership
            && !p.contains(&advertise)
        {
            return Err(invalid(
                "peers",
                p.join(","),
                &format!("the peers must include this node's own address ({advertise})"),
            ));
        }
        let default_shards = match &membership {
            Membership::Peers(p) => p.len() as u32,
            _ => 1,
        };
        let shards = pick(self.shards, file.shards, default_shards);
        if !(1..=1024).contains(&shards) {
            return Err(invalid("shards", shards.to_string(), "must be 1 to 1024"));
        }
        let replication_factor = pick(self.replication_factor, file.replication_factor, 3);
        if !(1..=7).contains(&replication_factor) {
            return Err(invalid(
                "replication-factor",
                replication_factor.to_string(),
                "must be 1 to 7",
            ));
        }
        let reserve_id = ordinal.is_some()
            && self.node_id.or(file.node_id).is_none()
            && membership != Membership::Alone;
        Ok(ClusterSettings {
            node_id: crate::ids::NodeId(node_id),
            reserve_id,
            advertise,
            membership,
            shards,
            replication_factor,
        })
    }
}

/// The admin token, from its file or from `FIRN_ADMIN_TOKEN` (the file wins).
fn admin_token(file: Option<PathBuf>, env: Option<String>) -> Result<Option<Secret>, ConfigError> {
    let (key, text) = match (file, env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            ("admin-token-file", text)
        }
        (None, Some(text)) => ("FIRN_ADMIN_TOKEN", text),
        (None, None) => return Ok(None),
    };
    let token = text.trim();
    if token.len() < MIN_ADMIN_TOKEN_LEN || !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ConfigError::Invalid {
            key,
            value: "<redacted>".into(),
            reason: format!(
                "the admin token must be at least {MIN_ADMIN_TOKEN_LEN} printable ASCII \
                 characters without spaces (it is {} long)",
                token.len()
            ),
        });
    }
    Ok(Some(Secret(token.to_owned())))
}

fn non_empty(list: Option<Vec<String>>) -> Option<Vec<String>> {
    list.map(|l| {
        l.into_iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect::<Vec<_>>()
    })
    .filter(|l| !l.is_empty())
}

/// The ordinal of a StatefulSet pod's name (`firn-2` is 2).
pub fn pod_ordinal(pod: &str) -> Option<u64> {
    let (name, ordinal) = pod.rsplit_once('-')?;
    if name.is_empty() || ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ordinal.parse::<u64>().ok().filter(|&o| o < u64::MAX)
}

/// Checks `HOST:PORT` addresses (a host name or an IP, and a port).
fn check_addrs(key: &'static str, addrs: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for a in &addrs {
        let valid = a.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(ConfigError::Invalid {
                key,
                value: a.clone(),
                reason: "use HOST:PORT, like firn-0.firn:4040 or 10.0.0.5:4040".into(),
            });
        }
    }
    Ok(addrs)
}

fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Parses `file:///path`, `s3://bucket/prefix` or `memory://`.
pub fn parse_object_store(url: &str) -> Result<ObjectStoreUrl, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        key: "object-store",
        value: url.to_owned(),
        reason: reason.to_owned(),
    };
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(invalid(
                "a file URL needs an absolute path: file:///var/lib/firn",
            ));
        }
        return Ok(ObjectStoreUrl::File(PathBuf::from(path)));
    }
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("an S3 URL needs a bucket: s3://bucket/prefix"));
        }
        return Ok(ObjectStoreUrl::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        });
    }
    if url == "memory://" {
        return Ok(ObjectStoreUrl::Memory);
    }
    Err(invalid("use file:///path, s3://bucket/prefix or memory://"))
}

#[cfg(test)]
mod tests;
