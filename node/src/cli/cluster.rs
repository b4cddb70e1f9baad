//! `firn cluster status` and `firn cluster remove-node`, over `/api/v1/cluster`.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Subcommand;

use super::{Remote, get_json, print_json, stdout};

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Nodes, and each shard's replicas and leader.
    Status {
        /// Print the node's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// Remove a node: its replicas move to the others first, then its id is retired (never
    /// reused). The node itself can be stopped once it is retired.
    RemoveNode {
        id: u64,
        /// Wait until the node is retired (at most this many seconds; 0 = do not wait).
        #[arg(long, default_value_t = 300)]
        wait_secs: u64,
    },
}

pub fn run(remote: &Remote, command: &ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status { json } => {
            let status = get_json(
                remote,
                remote.agent().get(&remote.endpoint("/api/v1/cluster")),
            )?;
            if *json {
                return print_json(&status);
            }
            stdout(&render(&status))
        }
        ClusterCommand::RemoveNode { id, wait_secs } => {
            let url = remote.endpoint(&format!("/api/v1/cluster/nodes/{id}"));
            remote.call(remote.agent().delete(&url), None)?;
            stdout(&format!(
                "node {id} is leaving: its replicas move to the other nodes\n"
            ))?;
            if *wait_secs == 0 {
                return Ok(());
            }
            let deadline = Instant::now() + Duration::from_secs(*wait_secs);
            loop {
                let status = get_json(
                    remote,
                    remote.agent().get(&remote.endpoint("/api/v1/cluster")),
                )?;
                let retired = status["retired"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|n| n.as_u64() == Some(*id)));
                if retired {
                    return stdout(&format!("node {id} is retired; it can be stopped\n"));
                }
                if Instant::now() >= deadline {
                    bail!(
                        "node {id} is not retired after {wait_secs} s; see `firn cluster status`"
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn render(status: &serde_json::Value) -> String {
    let mut out = String::new();
    let ids = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_u64())
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    out.push_str(&format!(
        "asked node {}, meta leader {}\n\nNODE  ADDRESS                 STATE    META\n",
        status["node"], status["meta_leader"]
    ));
    for n in status["nodes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<5} {:<23} {:<8} {}\n",
            n["id"].as_u64().unwrap_or(0),
            n["addr"].as_str().unwrap_or(""),
            n["state"].as_str().unwrap_or(""),
            if n["meta_voter"].as_bool() == Some(true) {
                "voter"
            } else {
                "learner"
            }
        ));
    }
    out.push_str("\nSHARD  LEADER  REPLICAS     VOTERS\n");
    for s in status["shards"].as_array().into_iter().flatten() {
        let leader = s["leader"]
            .as_u64()
            .map_or("-".to_owned(), |l| l.to_string());
        let moving = if s["moving"].as_bool() == Some(true) {
            "  (moving)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:<6} {:<7} {:<12} {}{moving}\n",
            s["shard"].as_u64().unwrap_or(0),
            leader,
            ids(&s["replicas"]),
            ids(&s["voters"])
        ));
    }
    out
}
