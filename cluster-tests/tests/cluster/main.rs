//! Scenarios against real `firn` processes: each forms a cluster, writes while a fault
//! happens, heals, and checks that every acknowledged write is queryable exactly once on
//! every node. One scenario runs at a time (they share two cores).

mod compaction;
mod faults;
mod helm;
mod membership;
mod statefulset;
mod tenancy;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use firn_cluster_tests::client::Targets;
use firn_cluster_tests::cluster::TestCluster;

/// The writers' targets: every node of the cluster.
fn all_targets(cluster: &TestCluster) -> Targets {
    Arc::new(RwLock::new(cluster.nodes.iter().map(|n| n.url()).collect()))
}

/// Writers pause this long between writes (three of them make tens of writes a second).
const PAUSE: Duration = Duration::from_millis(20);
