//! `firn`: the server and its command line.

use clap::{Parser, Subcommand};
use firn_node::cli::{self, IngestArgs, QueryCommand, Remote, SqlArgs};
use firn_node::config::ServeArgs;
use tokio_util::sync::CancellationToken;

/// mimalloc: decoding profiles allocates many small strings and vectors on every core, where
/// glibc's allocator spent a quarter of the replay's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "firn", version, about = "A continuous-profiling store")]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    remote: Remote,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node: ingest and query APIs on one port, data in a local directory by default.
    Serve(Box<ServeArgs>),
    /// Send profile files (pprof or folded) to a node.
    Ingest(IngestArgs),
    /// Ask a node: a merged profile, series over time, or labels.
    Query {
        #[command(subcommand)]
        command: QueryCommand,
    },
    /// Run a read-only SQL statement on a node.
    Sql(SqlArgs),
    /// See the cluster, or remove a node from it.
    Cluster {
        #[command(subcommand)]
        command: cli::cluster::ClusterCommand,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIRN_LOG")
                // openraft narrates every election and replication step at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a collector gets plain `key=value` fields.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Ingest(args) => cli::ingest(&cli.remote, &args)?,
        Command::Query { command } => cli::query(&cli.remote, &command)?,
        Command::Sql(args) => cli::sql(&cli.remote, &args)?,
        Command::Cluster { command } => cli::cluster::run(&cli.remote, &command)?,
        Command::Serve(args) => {
            let settings = args.resolve()?;
            if args.check_config {
                eprintln!("configuration is valid:\n{settings:#?}");
                return Ok(());
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("firn")
                .build()?;
            runtime.block_on(async {
                let shutdown = CancellationToken::new();
                let signal = shutdown.clone();
                let signals = tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("shutting down");
                    signal.cancel();
                });
                let result = firn_node::node::run(settings, shutdown).await;
                signals.abort();
                result
            })?;
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
