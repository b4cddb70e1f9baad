//! `firn serve` configuration: flags, each also an environment variable, and an optional TOML
//! file with the same keys (flags and environment win over the file). [`ServeArgs::resolve`]
//! checks everything before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
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

    /// Validate the configuration, print it and exit.
    #[arg(long)]
    pub check_config: bool,
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
}

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
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = pick(self.data_dir.clone(), file.data_dir, "firn-data".into());
        let listen_text = pick(self.listen.clone(), file.listen, "0.0.0.0:4040".into());
        let listen: SocketAddr = listen_text.parse().map_err(|e| ConfigError::Invalid {
            key: "listen",
            value: listen_text.clone(),
            reason: format!("{e}; use HOST:PORT with an IP address, like 0.0.0.0:4040"),
        })?;
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
        let settings = Settings {
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
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_laptop_setup() {
        let s = ServeArgs::default().resolve().expect("defaults are valid");
        assert_eq!(s.listen.to_string(), "0.0.0.0:4040");
        assert_eq!(s.data_dir, PathBuf::from("firn-data"));
        assert!(
            matches!(&s.object_store, ObjectStoreUrl::File(p) if p.ends_with("firn-data/objects"))
        );
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("firn.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:5000\"\ndata_dir = \"/from-file\"\nobject_store = \"memory://\"\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:6000".into()),
            ..Default::default()
        };
        let s = args.resolve().expect("valid");
        assert_eq!(s.listen.to_string(), "127.0.0.1:6000");
        assert_eq!(s.data_dir, PathBuf::from("/from-file"));
        assert_eq!(s.object_store, ObjectStoreUrl::Memory);
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                ServeArgs {
                    listen: Some("localhost".into()),
                    ..Default::default()
                },
                "listen",
            ),
            (
                ServeArgs {
                    object_store: Some("ftp://x".into()),
                    ..Default::default()
                },
                "object-store",
            ),
            (
                ServeArgs {
                    flush_bytes: Some(10),
                    buffer_bytes: Some(5),
                    ..Default::default()
                },
                "flush-bytes",
            ),
            (
                ServeArgs {
                    s3_endpoint: Some("minio:9000".into()),
                    ..Default::default()
                },
                "s3-endpoint",
            ),
        ];
        for (args, key) in cases {
            let err = args.resolve().expect_err("invalid").to_string();
            assert!(err.starts_with(key), "{err}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("firn.toml");
        std::fs::write(&path, "lisen = \"x\"\n").expect("write");
        let err = ServeArgs {
            config: Some(path),
            ..Default::default()
        }
        .resolve()
        .expect_err("unknown key")
        .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn object_store_urls() {
        assert_eq!(
            parse_object_store("s3://bucket/a/b/").expect("valid"),
            ObjectStoreUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert!(parse_object_store("file://relative").is_err());
        assert!(parse_object_store("s3:///x").is_err());
    }
}
