//! The client half of the `firn` binary: `firn ingest`, `firn query`, `firn sql`, talking
//! to a node's HTTP API (`--url`, the local node by default).
//!
//! ```text
//!  firn ingest FILE...          POST /ingest per file (pprof or folded), with a progress bar
//!  firn query merge|series|labels   GET /api/v1/{merge,series,labels}
//!  firn sql "SELECT ..."        POST /api/v1/sql
//!  firn cluster status|remove-node  GET /api/v1/cluster, DELETE /api/v1/cluster/nodes/{id}
//! ```

pub mod cluster;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

/// Where and as whom the client talks.
#[derive(Args, Clone, Debug)]
pub struct Remote {
    /// The node's HTTP address.
    #[arg(
        long,
        env = "FIRN_URL",
        default_value = "http://127.0.0.1:4040",
        global = true
    )]
    pub url: String,

    /// Tenant (sent as `X-Scope-OrgID`); the node's default tenant when absent.
    #[arg(long, env = "FIRN_TENANT", global = true)]
    pub tenant: Option<String>,

    /// API token (sent as `Authorization: Bearer`), for a node started with `--auth=token`.
    #[arg(long, env = "FIRN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,

    /// Seconds to wait for each request.
    #[arg(long, default_value_t = 60, global = true)]
    pub timeout_secs: u64,
}

impl Remote {
    fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(self.timeout_secs))
            .build()
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    fn with_tenant(&self, request: ureq::Request) -> ureq::Request {
        let request = match &self.token {
            Some(t) => request.set("Authorization", &format!("Bearer {t}")),
            None => request,
        };
        match &self.tenant {
            Some(t) => request.set("X-Scope-OrgID", t),
            None => request,
        }
    }

    /// Sends a request; a non-2xx answer becomes an error carrying the node's message.
    fn call(&self, request: ureq::Request, body: Option<&[u8]>) -> anyhow::Result<ureq::Response> {
        let request = self.with_tenant(request);
        let url = request.url().to_owned();
        let result = match body {
            Some(b) => request.send_bytes(b),
            None => request.call(),
        };
        match result {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                    .unwrap_or(text);
                bail!("{status}: {}", message.trim())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("requesting {url} failed"))),
        }
    }
}

/// Options of `firn ingest`.
#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Profiles to send: pprof (raw or gzipped) or folded text (`a;b;c 12` lines).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,

    /// Service name the profiles belong to. [default: each file's name without extension]
    #[arg(long)]
    pub service: Option<String>,

    /// A label for every profile, `key=value`; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// What folded files measure, as Pyroscope names it (`cpu`, `alloc_space`, ...).
    #[arg(long, default_value = "cpu")]
    pub profile_type: String,

    /// Start of the profiled window (RFC 3339, unix time, or `now-1h`); pprof files carry
    /// their own time. [default: now]
    #[arg(long)]
    pub from: Option<String>,

    /// End of the profiled window. [default: now]
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum QueryCommand {
    /// The selection merged into one profile.
    Merge(MergeArgs),
    /// Values over time, one series per label set.
    Series(SeriesArgs),
    /// Label names, or the values of one label.
    Labels(LabelsArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MergeFormat {
    /// The functions with the most self time, as a table.
    Top,
    /// Gzipped pprof (write it with `--output`, or redirect stdout).
    Pprof,
    /// One line per stack, `a;b;c value`.
    Folded,
    /// The flame graph as JSON.
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    /// A table people read.
    Text,
    /// The node's JSON answer.
    Json,
}

/// The selection and time range every query takes.
#[derive(Args, Debug)]
pub struct Selection {
    /// Profile type and label matchers:
    /// `process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api"}`.
    #[arg(long)]
    pub selector: String,

    /// Start (RFC 3339, unix time, or `now-1h`). [default: an hour ago]
    #[arg(long)]
    pub from: Option<String>,

    /// End. [default: now]
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    #[command(flatten)]
    pub selection: Selection,

    #[arg(long, value_enum, default_value_t = MergeFormat::Top)]
    pub format: MergeFormat,

    /// Rows of the top table.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,

    /// Write the answer to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SeriesArgs {
    #[command(flatten)]
    pub selection: Selection,

    /// Time between points: seconds, or a duration such as `1m`. [default: chosen by the
    /// node, about a thousand points]
    #[arg(long)]
    pub step: Option<String>,

    /// Label to split the series by; repeat for more.
    #[arg(long = "group-by")]
    pub group_by: Vec<String>,

    #[arg(long, value_enum, default_value_t = TableFormat::Text)]
    pub format: TableFormat,
}

#[derive(Args, Debug)]
pub struct LabelsArgs {
    /// List the values of this label instead of the label names.
    #[arg(long)]
    pub name: Option<String>,

    /// Only labels of the profiles this selector matches.
    #[arg(long)]
    pub selector: Option<String>,

    #[arg(long)]
    pub from: Option<String>,

    #[arg(long)]
    pub to: Option<String>,

    #[arg(long, value_enum, default_value_t = TableFormat::Text)]
    pub format: TableFormat,
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// A read-only statement over the tenant's `samples` (and `stacks`) tables.
    pub statement: String,

    #[arg(long, value_enum, default_value_t = TableFormat::Text)]
    pub format: TableFormat,
}

/// Sends each file to `/ingest`, drawing a progress bar on a terminal.
pub fn ingest(remote: &Remote, args: &IngestArgs) -> anyhow::Result<()> {
    let agent = remote.agent();
    let mut progress = Progress::new(args.files.len());
    let started = Instant::now();
    let mut sent_bytes = 0u64;
    let mut failed = 0usize;
    for file in &args.files {
        let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let (name, format) = ingest_target(args, file, &body)?;
        let mut request = agent
            .post(&remote.endpoint("/ingest"))
            .query("name", &name)
            .query("format", format)
            .set("Content-Type", "application/octet-stream");
        if let Some(from) = &args.from {
            request = request.query("from", from);
        }
        if let Some(until) = &args.until {
            request = request.query("until", until);
        }
        match remote.call(request, Some(&body)) {
            Ok(_) => sent_bytes += body.len() as u64,
            Err(e) => {
                failed += 1;
                progress.message(&format!("{}: {e:#}", file.display()));
            }
        }
        progress.advance(sent_bytes);
    }
    progress.finish();
    let ok = args.files.len() - failed;
    eprintln!(
        "sent {ok} of {} files ({:.1} MB) in {:.1} s",
        args.files.len(),
        sent_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        bail!("{failed} files were refused");
    }
    Ok(())
}

/// The `name` (service, profile type suffix for folded text, labels) and format of a file.
fn ingest_target(
    args: &IngestArgs,
    file: &Path,
    body: &[u8],
) -> anyhow::Result<(String, &'static str)> {
    let service = match &args.service {
        Some(s) => s.clone(),
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.split('.').next().unwrap_or(s).to_owned())
            .filter(|s| !s.is_empty())
            .context("cannot name a service after the file; pass --service")?,
    };
    let mut labels = Vec::with_capacity(args.labels.len());
    for label in &args.labels {
        let Some((key, value)) = label.split_once('=') else {
            bail!("--label {label:?} is not key=value");
        };
        labels.push(format!("{key}={value}"));
    }
    let pprof = is_pprof(body);
    let mut name = if pprof {
        service
    } else {
        format!("{service}.{}", args.profile_type)
    };
    if !labels.is_empty() {
        name.push('{');
        name.push_str(&labels.join(","));
        name.push('}');
    }
    Ok((name, if pprof { "pprof" } else { "folded" }))
}

/// Gzip, or a protobuf whose first field is a `sample_type` message (field 1, wire type 2).
fn is_pprof(body: &[u8]) -> bool {
    body.starts_with(&[0x1f, 0x8b]) || body.first() == Some(&0x0a)
}

pub fn query(remote: &Remote, command: &QueryCommand) -> anyhow::Result<()> {
    match command {
        QueryCommand::Merge(args) => merge(remote, args),
        QueryCommand::Series(args) => series(remote, args),
        QueryCommand::Labels(args) => labels(remote, args),
    }
}

fn with_range(
    mut request: ureq::Request,
    from: &Option<String>,
    to: &Option<String>,
) -> ureq::Request {
    if let Some(from) = from {
        request = request.query("from", from);
    }
    if let Some(to) = to {
        request = request.query("until", to);
    }
    request
}

fn merge(remote: &Remote, args: &MergeArgs) -> anyhow::Result<()> {
    let format = match args.format {
        MergeFormat::Top => "top",
        MergeFormat::Pprof => "pprof",
        MergeFormat::Folded => "folded",
        MergeFormat::Json => "flamegraph",
    };
    let request = remote
        .agent()
        .get(&remote.endpoint("/api/v1/merge"))
        .query("query", &args.selection.selector)
        .query("format", format);
    let request = with_range(request, &args.selection.from, &args.selection.to);
    let response = remote.call(request, None)?;
    let mut body = Vec::new();
    response
        .into_reader()
        .take(1 << 31)
        .read_to_end(&mut body)
        .context("reading the answer")?;
    let out = match args.format {
        MergeFormat::Top => render_top(&body, args.limit)?.into_bytes(),
        _ => body,
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            if args.format == MergeFormat::Pprof && std::io::stdout().is_terminal() {
                bail!("pprof is binary: pass --output FILE or redirect stdout");
            }
            std::io::stdout().write_all(&out).context("writing stdout")
        }
    }
}

#[derive(serde::Deserialize)]
struct TopRow {
    function: String,
    flat: i64,
    cumulative: i64,
}

fn render_top(body: &[u8], limit: usize) -> anyhow::Result<String> {
    let rows: Vec<TopRow> = serde_json::from_slice(body).context("the top table is not JSON")?;
    let total: i64 = rows.iter().map(|r| r.flat).sum();
    let pct = |v: i64| {
        if total == 0 {
            0.0
        } else {
            v as f64 * 100.0 / total as f64
        }
    };
    let mut out = format!(
        "{:>14} {:>7} {:>14} {:>7}  function\n",
        "flat", "flat%", "cum", "cum%"
    );
    for r in rows.iter().take(limit) {
        out.push_str(&format!(
            "{:>14} {:>6.2}% {:>14} {:>6.2}%  {}\n",
            r.flat,
            pct(r.flat),
            r.cumulative,
            pct(r.cumulative),
            r.function
        ));
    }
    Ok(out)
}

fn get_json(remote: &Remote, request: ureq::Request) -> anyhow::Result<serde_json::Value> {
    let response = remote.call(request, None)?;
    let text = response.into_string().context("reading the answer")?;
    serde_json::from_str(&text).context("the answer is not JSON")
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    stdout(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

fn series(remote: &Remote, args: &SeriesArgs) -> anyhow::Result<()> {
    let mut request = remote
        .agent()
        .get(&remote.endpoint("/api/v1/series"))
        .query("query", &args.selection.selector);
    request = with_range(request, &args.selection.from, &args.selection.to);
    if let Some(step) = &args.step {
        request = request.query("step", step);
    }
    if !args.group_by.is_empty() {
        request = request.query("group_by", &args.group_by.join(","));
    }
    let value = get_json(remote, request)?;
    match args.format {
        TableFormat::Json => print_json(&value),
        TableFormat::Text => stdout(&render_series(&value)),
    }
}

/// Series as text: a heading per label set, then `time value` lines. Reads the node's answer
/// loosely (an array of series, or an object holding one), so it prints what it can find.
fn render_series(value: &serde_json::Value) -> String {
    let list = value
        .as_array()
        .or_else(|| value.get("series").and_then(|s| s.as_array()));
    let Some(list) = list else {
        return format!("{value}\n");
    };
    let mut out = String::new();
    for series in list {
        let labels = series
            .get("labels")
            .map(|l| match l {
                serde_json::Value::Object(map) => map
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(&v.to_string())))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            })
            .unwrap_or_default();
        out.push_str(&format!("{{{labels}}}\n"));
        if let Some(points) = series.get("points").and_then(|p| p.as_array()) {
            for p in points {
                let (t, v) = match p {
                    serde_json::Value::Array(pair) if pair.len() == 2 => {
                        (pair[0].to_string(), pair[1].to_string())
                    }
                    serde_json::Value::Object(o) => (
                        o.get("timestamp")
                            .or_else(|| o.get("time"))
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                        o.get("value").map(|v| v.to_string()).unwrap_or_default(),
                    ),
                    other => (other.to_string(), String::new()),
                };
                out.push_str(&format!("  {t} {v}\n"));
            }
        }
    }
    out
}

fn labels(remote: &Remote, args: &LabelsArgs) -> anyhow::Result<()> {
    let path = match &args.name {
        Some(name) => format!("/api/v1/labels/{}/values", urlencode(name)),
        None => "/api/v1/labels".to_owned(),
    };
    let mut cursor: Option<String> = None;
    loop {
        let mut request = remote.agent().get(&remote.endpoint(&path));
        if let Some(selector) = &args.selector {
            request = request.query("query", selector);
        }
        if let Some(c) = &cursor {
            request = request.query("cursor", c);
        }
        request = with_range(request, &args.from, &args.to);
        let value = get_json(remote, request)?;
        print_labels(args, &value)?;
        // Values come a page at a time; text output follows the pages to the last one.
        cursor = value
            .get("next_cursor")
            .and_then(|c| c.as_str())
            .map(str::to_owned);
        if cursor.is_none() || matches!(args.format, TableFormat::Json) {
            return Ok(());
        }
    }
}

fn print_labels(args: &LabelsArgs, value: &serde_json::Value) -> anyhow::Result<()> {
    match args.format {
        TableFormat::Json => print_json(value),
        TableFormat::Text => {
            let list = value.as_array().or_else(|| {
                ["names", "values", "labels"]
                    .iter()
                    .find_map(|k| value.get(*k).and_then(|v| v.as_array()))
            });
            let text = match list {
                Some(items) => items
                    .iter()
                    .map(|item| item.as_str().map_or(item.to_string(), str::to_owned) + "\n")
                    .collect(),
                None => format!("{value}\n"),
            };
            stdout(&text)
        }
    }
}

/// Percent-encodes everything but URL-safe characters (for paths and query values).
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn sql(remote: &Remote, args: &SqlArgs) -> anyhow::Result<()> {
    let format = match args.format {
        TableFormat::Text => "text",
        TableFormat::Json => "json",
    };
    let request = remote
        .agent()
        .post(&remote.endpoint("/api/v1/sql"))
        .query("format", format)
        .set("Content-Type", "text/plain");
    let response = remote.call(request, Some(args.statement.as_bytes()))?;
    stdout(&response.into_string().context("reading the answer")?)
}

/// Writes an answer to stdout (the CLI's output; logs and progress go to stderr).
fn stdout(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing stdout")
}

/// A one-line progress bar on stderr when it is a terminal; silent otherwise.
struct Progress {
    total: usize,
    done: usize,
    draw: bool,
    started: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            done: 0,
            draw: std::io::stderr().is_terminal() && total > 1,
            started: Instant::now(),
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.done += 1;
        if !self.draw {
            return;
        }
        const WIDTH: usize = 30;
        let filled = WIDTH * self.done / self.total.max(1);
        let rate = bytes as f64 / 1e6 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r[{}{}] {}/{} files, {:.1} MB/s ",
            "#".repeat(filled),
            ".".repeat(WIDTH - filled),
            self.done,
            self.total,
            rate
        );
    }

    fn message(&self, text: &str) {
        if self.draw {
            eprint!("\r\x1b[K");
        }
        eprintln!("{text}");
    }

    fn finish(&self) {
        if self.draw {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(service: Option<&str>, labels: &[&str]) -> IngestArgs {
        IngestArgs {
            files: vec![],
            service: service.map(str::to_owned),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            profile_type: "cpu".into(),
            from: None,
            until: None,
        }
    }

    #[test]
    fn files_are_named_and_typed() {
        let gz = [0x1f, 0x8b, 0, 0];
        assert_eq!(
            ingest_target(&args(None, &[]), Path::new("/x/api.pb.gz"), &gz).expect("name"),
            ("api".to_owned(), "pprof")
        );
        assert_eq!(
            ingest_target(
                &args(Some("web"), &["env=prod", "region=eu"]),
                Path::new("stacks.txt"),
                b"a;b 1\n"
            )
            .expect("name"),
            ("web.cpu{env=prod,region=eu}".to_owned(), "folded")
        );
        assert!(ingest_target(&args(None, &["bad"]), Path::new("a.txt"), b"a 1").is_err());
    }

    #[test]
    fn top_tables_show_shares() {
        let body = br#"[{"function":"hot","flat":75,"cumulative":100},{"function":"cold","flat":25,"cumulative":25}]"#;
        let text = render_top(body, 1).expect("render");
        assert!(text.contains("75.00%"), "{text}");
        assert!(text.contains("hot"), "{text}");
        assert!(!text.contains("cold"), "{text}");
    }
}
