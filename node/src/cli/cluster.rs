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
    /// Remove the nodes a StatefulSet scaled down to N pods drops (`NAME-N` and up: nodes whose
    /// address starts with a pod name of ordinal N or more; by id above N for an address that
    /// names no pod), and wait until they are retired. Nothing to remove is not an error: the
    /// Helm chart runs it before every upgrade.
    Shrink {
        #[arg(long)]
        to: u64,
        /// Wait until the nodes are retired (at most this many seconds; 0 = do not wait).
        #[arg(long, default_value_t = 600)]
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
            remove(remote, *id)?;
            wait_retired(remote, &[*id], *wait_secs)
        }
        ClusterCommand::Shrink { to, wait_secs } => {
            if *to == 0 {
                bail!("--to must be at least 1: a cluster keeps one node");
            }
            let status = get_json(
                remote,
                remote.agent().get(&remote.endpoint("/api/v1/cluster")),
            )?;
            let retired = retired(&status);
            let leaving: Vec<u64> = status["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| Some((n["id"].as_u64()?, n["addr"].as_str()?)))
                .filter(|(id, addr)| {
                    let dropped = pod_ordinal(addr).map_or(*id > *to, |o| o >= *to);
                    dropped && !retired.contains(id)
                })
                .map(|(id, _)| id)
                .collect();
            if leaving.is_empty() {
                return stdout(&format!("no node above {to}: nothing to remove\n"));
            }
            for &id in &leaving {
                remove(remote, id)?;
            }
            wait_retired(remote, &leaving, *wait_secs)
        }
    }
}

/// The StatefulSet ordinal an address names: `firn-2.firn-headless...:4040` is 2.
fn pod_ordinal(addr: &str) -> Option<u64> {
    crate::config::pod_ordinal(addr.split(['.', ':']).next()?)
}

/// The retired node ids of a cluster status.
fn retired(status: &serde_json::Value) -> Vec<u64> {
    status["retired"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_u64())
        .collect()
}

/// Starts removing node `id` (idempotent: a node already leaving stays so).
fn remove(remote: &Remote, id: u64) -> anyhow::Result<()> {
    let url = remote.endpoint(&format!("/api/v1/cluster/nodes/{id}"));
    remote.call(remote.agent().delete(&url), None)?;
    stdout(&format!(
        "node {id} is leaving: its replicas move to the other nodes\n"
    ))
}

/// Waits up to `wait_secs` (0: not at all) until every node of `ids` is retired.
fn wait_retired(remote: &Remote, ids: &[u64], wait_secs: u64) -> anyhow::Result<()> {
    if wait_secs == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    loop {
        let status = get_json(
            remote,
            remote.agent().get(&remote.endpoint("/api/v1/cluster")),
        )?;
        let retired = retired(&status);
        let waiting: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !retired.contains(id))
            .collect();
        if waiting.is_empty() {
            let list: Vec<String> = ids.iter().map(u64::to_string).collect();
            return stdout(&format!(
                "node {} retired; it can be stopped\n",
                list.join(", ")
            ));
        }
        if Instant::now() >= deadline {
            bail!("node {waiting:?} not retired after {wait_secs} s; see `firn cluster status`");
        }
        std::thread::sleep(Duration::from_millis(500));
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

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_name_their_pod_ordinal() {
        assert_eq!(
            super::pod_ordinal("firn-12.firn-headless.obs.svc.cluster.local:4040"),
            Some(12)
        );
        assert_eq!(super::pod_ordinal("firn-0:4040"), Some(0));
        assert_eq!(super::pod_ordinal("10.0.0.5:4040"), None);
        assert_eq!(super::pod_ordinal("my-host.example:4040"), None);
    }
}
