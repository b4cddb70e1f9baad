//! Tenancy across real nodes with `--auth=token`: nodes reach each other with the credential
//! derived from the shared admin token (forwarded writes, Flight reads), and a token revoked
//! through one node stops working on every node within seconds.

use std::time::{Duration, Instant};

use firn_cluster_tests::cluster::{Options, TestCluster};
use firn_cluster_tests::{exclusive, narrate, wait_until};
use serde_json::Value;

const ADMIN: &str = "cluster-operator-token-0123456789";

fn send(request: ureq::Request, body: Option<&str>) -> (u16, String) {
    let response = match body {
        Some(b) => request.send_string(b),
        None => request.call(),
    };
    match response {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn bearer(request: ureq::Request, token: &str) -> ureq::Request {
    request
        .set("Authorization", &format!("Bearer {token}"))
        .timeout(Duration::from_secs(10))
}

fn write(url: &str, token: &str, stack: &str) -> u16 {
    send(
        bearer(
            ureq::post(&format!("{url}/ingest?name=svc.cpu&format=folded")),
            token,
        ),
        Some(&format!("main;{stack} 1\n")),
    )
    .0
}

#[test]
fn nodes_authenticate_each_other_and_revocation_reaches_every_node() {
    let _one = exclusive();
    let cluster = TestCluster::start(Options {
        admin_token: Some(ADMIN.into()),
        ..Default::default()
    });
    let t = cluster.started;
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let create = |path: &str, body: &str| {
        let (status, text) = send(
            bearer(ureq::post(&format!("{}{path}", urls[0])), ADMIN)
                .set("Content-Type", "application/json"),
            Some(body),
        );
        assert_eq!(status, 201, "{path}: {text}");
        serde_json::from_str::<Value>(&text).expect("JSON")
    };
    create("/api/v1/admin/tenants", r#"{"id":"acme"}"#);
    let writer = create("/api/v1/admin/tenants/acme/tokens", r#"{"role":"write"}"#);
    let reader = create("/api/v1/admin/tenants/acme/tokens", r#"{"role":"read"}"#);
    let (writer_id, writer) = (
        writer["id"].as_str().expect("id").to_owned(),
        writer["token"].as_str().expect("token").to_owned(),
    );
    let reader = reader["token"].as_str().expect("token").to_owned();
    // The meta group has the tokens everywhere within moments.
    assert!(wait_until(Duration::from_secs(10), || urls
        .iter()
        .all(|u| write(u, &writer, "warmup") == 200)));
    // Series spread over the three shards, so most writes are forwarded between nodes.
    for (i, url) in urls.iter().enumerate() {
        for k in 0..10 {
            let (status, text) = send(
                bearer(
                    ureq::post(&format!(
                        "{url}/ingest?name={}&format=folded",
                        firn_cluster_tests::client::encode(&format!("svc.cpu{{pod=p{i}-{k}}}"))
                    )),
                    &writer,
                ),
                Some("main;spread 1\n"),
            );
            assert_eq!(status, 200, "{text}");
        }
    }
    // A read through each node fans out over Flight to the other shards' replicas.
    for url in &urls {
        let (status, text) = send(
            bearer(
                ureq::get(&format!(
                    "{url}/api/v1/merge?query={}&from=now-1h&until=now%2B1h&format=folded",
                    firn_cluster_tests::client::encode(
                        "process_cpu:cpu:nanoseconds:cpu:nanoseconds{}"
                    )
                )),
                &reader,
            ),
            None,
        );
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("main;spread 300000000"), "{url}: {text}");
    }
    narrate(t, "revoke the writer's token through node 1");
    let (status, text) = send(
        bearer(
            ureq::delete(&format!("{}/api/v1/admin/tokens/{writer_id}", urls[0])),
            ADMIN,
        ),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let revoked = Instant::now();
    let mut refused_after = Vec::new();
    for url in &urls {
        assert!(
            wait_until(Duration::from_secs(5), || write(url, &writer, "late")
                == 401),
            "{url} still takes a revoked token"
        );
        refused_after.push(revoked.elapsed());
    }
    narrate(t, &format!("revoked on every node after {refused_after:?}"));
    // The operator's token is not a tenant's: no tenant name, no data of another.
    let (status, _) = send(
        bearer(ureq::get(&format!("{}/api/v1/cluster", urls[2])), &reader),
        None,
    );
    assert_eq!(status, 403);
}
