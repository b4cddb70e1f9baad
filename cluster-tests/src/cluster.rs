//! A test cluster: real nodes formed with `--peers` over one S3 bucket, grown with `--join`,
//! and what they say of themselves (`/api/v1/cluster`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::net::Net;
use crate::node::{Node, NodeSpec};
use crate::s3::S3;
use crate::{narrate, wait_until};

/// How long a node may take to become ready.
pub const READY: Duration = Duration::from_secs(60);

/// The shape of a test cluster.
#[derive(Clone, Debug)]
pub struct Options {
    pub nodes: usize,
    /// Hosts to make room for (nodes added later).
    pub max_nodes: usize,
    pub shards: u32,
    pub replication_factor: u32,
    /// How often shard leaders flush (short, so blocks, snapshots and purges happen in tests).
    pub flush_interval_secs: u64,
    /// More `serve` flags for every node.
    pub extra: Vec<String>,
    /// Runs every node with `--auth=token` and this bootstrap admin token; the harness's own
    /// calls (cluster status, removals) present it.
    pub admin_token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 3,
            max_nodes: 4,
            shards: 3,
            replication_factor: 3,
            flush_interval_secs: 2,
            extra: Vec::new(),
            admin_token: None,
        }
    }
}

/// Nodes, their network and their object store.
#[derive(Debug)]
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub s3: S3,
    pub net: Arc<Net>,
    options: Options,
    dir: tempfile::TempDir,
    pub started: Instant,
}

impl TestCluster {
    /// Starts `options.nodes` nodes with `--peers` and waits until every one is ready.
    pub fn start(options: Options) -> Self {
        let started = Instant::now();
        let net = Arc::new(Net::new(options.max_nodes));
        narrate(
            started,
            if net.partitionable() {
                "network: a namespace per node"
            } else {
                "network: loopback"
            },
        );
        let s3 = S3::start(&net.gateway());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cluster = Self {
            nodes: Vec::new(),
            s3,
            net,
            options: options.clone(),
            dir,
            started,
        };
        let specs: Vec<NodeSpec> = (0..options.nodes).map(|i| cluster.spec(i)).collect();
        let peers = specs
            .iter()
            .map(|s| format!("{}:{}", cluster.net.host(s.host).ip, s.port))
            .collect::<Vec<_>>()
            .join(",");
        for mut spec in specs {
            spec.args.extend(["--peers".into(), peers.clone()]);
            cluster.nodes.push(Node::spawn(cluster.net.clone(), spec));
        }
        for node in &mut cluster.nodes {
            node.wait_ready(READY);
        }
        cluster.wait_settled(READY);
        narrate(started, &format!("{} nodes ready", options.nodes));
        cluster
    }

    fn spec(&self, i: usize) -> NodeSpec {
        let port = if self.net.partitionable() {
            4040
        } else {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        };
        let mut args: Vec<String> = [
            "--object-store",
            &format!("s3://{}/cluster", self.s3.bucket),
            "--s3-endpoint",
            &self.s3.endpoint,
            "--flush-interval-secs",
            &self.options.flush_interval_secs.to_string(),
            "--shards",
            &self.options.shards.to_string(),
            "--replication-factor",
            &self.options.replication_factor.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.options.extra.iter().cloned());
        let mut env: Vec<(String, String)> = vec![
            ("AWS_ACCESS_KEY_ID".into(), "test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ];
        if let Some(token) = &self.options.admin_token {
            args.extend(["--auth".into(), "token".into()]);
            env.push(("FIRN_ADMIN_TOKEN".into(), token.clone()));
        }
        NodeSpec {
            id: i as u64 + 1,
            host: i,
            port,
            data_dir: self.dir.path().join(format!("node-{}", i + 1)),
            args,
            env,
        }
    }

    /// Starts one more node that joins through the first running one; returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        assert!(i < self.options.max_nodes, "no host left for another node");
        let via = self.any_running().addr();
        let mut spec = self.spec(i);
        spec.args.extend(["--join".into(), via]);
        self.nodes.push(Node::spawn(self.net.clone(), spec));
        self.nodes[i].wait_ready(READY);
        i
    }

    /// The index of node `id`.
    pub fn index(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.spec.id == id)
            .expect("a node of this cluster")
    }

    fn any_running(&self) -> &Node {
        self.nodes.iter().find(|n| n.ready()).expect("a ready node")
    }

    /// `request` with the operator's token, when the cluster has one.
    pub fn as_operator(&self, request: ureq::Request) -> ureq::Request {
        match &self.options.admin_token {
            Some(t) => request.set("Authorization", &format!("Bearer {t}")),
            None => request,
        }
    }

    /// The cluster as a ready node describes it.
    pub fn status(&self) -> Value {
        for node in &self.nodes {
            if let Ok(r) = self
                .as_operator(ureq::get(&format!("{}/api/v1/cluster", node.url())))
                .timeout(Duration::from_secs(2))
                .call()
                && let Ok(v) = serde_json::from_str::<Value>(&r.into_string().unwrap_or_default())
                && v["shards"].as_array().is_some_and(|s| !s.is_empty())
            {
                return v;
            }
        }
        Value::Null
    }

    /// The leader of `shard` as the nodes that hold it say (a majority must agree).
    pub fn shard_leader(&self, shard: usize) -> Option<u64> {
        let mut votes = std::collections::BTreeMap::<u64, usize>::new();
        for node in &self.nodes {
            let Ok(r) = self
                .as_operator(ureq::get(&format!("{}/api/v1/cluster", node.url())))
                .timeout(Duration::from_secs(2))
                .call()
            else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(&r.into_string().unwrap_or_default()) else {
                continue;
            };
            let holds = v["shards"][shard]["voters"]
                .as_array()
                .is_some_and(|a| a.iter().any(|n| n.as_u64() == v["node"].as_u64()));
            if let (true, Some(l)) = (holds, v["shards"][shard]["leader"].as_u64()) {
                *votes.entry(l).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|(_, n)| *n).map(|(l, _)| l)
    }

    /// Waits until every shard has a leader and no replica is moving.
    pub fn wait_settled(&self, deadline: Duration) {
        let settled = wait_until(deadline, || {
            let s = self.status();
            s["shards"].as_array().is_some_and(|shards| {
                shards.iter().all(|sh| {
                    sh["moving"].as_bool() == Some(false)
                        && sh["voters"].as_array().is_some_and(|v| !v.is_empty())
                })
            }) && (0..self.options.shards as usize).all(|i| self.shard_leader(i).is_some())
        });
        assert!(
            settled,
            "the cluster did not settle: {}\n{}",
            self.status(),
            self.logs()
        );
    }

    /// Removes node `id` through another node and waits until it is retired.
    pub fn remove_node(&self, id: u64, deadline: Duration) {
        let via = self
            .nodes
            .iter()
            .find(|n| n.spec.id != id && n.ready())
            .expect("another ready node");
        let response = self
            .as_operator(ureq::delete(&format!(
                "{}/api/v1/cluster/nodes/{id}",
                via.url()
            )))
            .call();
        assert!(response.is_ok(), "removing node {id}: {response:?}");
        let retired = wait_until(deadline, || {
            self.status()["retired"]
                .as_array()
                .is_some_and(|r| r.iter().any(|n| n.as_u64() == Some(id)))
        });
        assert!(
            retired,
            "node {id} was not retired: {}\n{}",
            self.status(),
            self.logs()
        );
    }

    /// The nodes' logs, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- node {} ---\n{}", n.spec.id, n.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
