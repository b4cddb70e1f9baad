//! Firn's cluster API: what the cluster looks like, and removing a node.
//!
//! ```text
//!  GET    /api/v1/cluster               settings, nodes, each shard's replicas and leader
//!  DELETE /api/v1/cluster/nodes/{id}    start removing a node: its replicas move elsewhere,
//!                                       then it is retired (its id is never reused)
//! ```

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use firn_storage::ShardId;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::cluster::meta::{MetaCommand, NodeState};
use crate::error::{Error, Result};
use crate::ids::NodeId;

/// `GET /api/v1/cluster`.
pub async fn status(State(state): State<AppState>) -> Json<Value> {
    let cluster = &state.cluster;
    let meta = cluster.state();
    let voters = cluster.meta.members().voters;
    let nodes: Vec<Value> = meta
        .nodes
        .iter()
        .map(|(id, n)| {
            json!({
                "id": id.0,
                "addr": n.addr,
                "state": match n.state {
                    NodeState::Active => "active",
                    NodeState::Leaving => "leaving",
                },
                "meta_voter": voters.contains(id),
            })
        })
        .collect();
    let shards: Vec<Value> = meta
        .shards
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let shard = ShardId(i as u32);
            json!({
                "shard": i,
                "replicas": p.desired.iter().map(|n| n.0).collect::<Vec<_>>(),
                "voters": p.members.iter().map(|n| n.0).collect::<Vec<_>>(),
                "leader": cluster.leader_hint(shard).map(|n| n.0),
                "moving": !p.members.is_empty() && p.moving(),
            })
        })
        .collect();
    Json(json!({
        "node": cluster.id.0,
        "meta_leader": cluster.meta.leader().map(|n| n.0),
        "settings": meta.settings.as_ref().map(|s| json!({
            "shards": s.shards,
            "replication_factor": s.replication_factor,
        })),
        "nodes": nodes,
        "retired": meta.retired.iter().map(|n| n.0).collect::<Vec<_>>(),
        "shards": shards,
    }))
}

/// `DELETE /api/v1/cluster/nodes/{id}`: 202 once the node is leaving.
pub async fn remove_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>)> {
    let id: u64 = id
        .parse()
        .map_err(|_| Error::BadRequest(format!("node id {id:?} is not a number")))?;
    let meta = state.cluster.state();
    if meta.retired.contains(&NodeId(id)) {
        return Ok((
            StatusCode::OK,
            Json(json!({"node": id, "state": "retired"})),
        ));
    }
    if !meta.nodes.contains_key(&NodeId(id)) {
        return Err(Error::BadRequest(format!(
            "node {id} is not a member of the cluster"
        )));
    }
    state
        .cluster
        .propose_meta(MetaCommand::NodeLeaving { id: NodeId(id) })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"node": id, "state": "leaving"})),
    ))
}
