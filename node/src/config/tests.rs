use super::*;

#[test]
fn defaults_are_the_laptop_setup() {
    let s = ServeArgs::default().resolve().expect("defaults are valid");
    assert_eq!(s.listen.to_string(), "0.0.0.0:4040");
    assert_eq!(s.data_dir, PathBuf::from("firn-data"));
    assert!(matches!(&s.object_store, ObjectStoreUrl::File(p) if p.ends_with("firn-data/objects")));
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
fn cluster_flags_are_checked() {
    let alone = ServeArgs::default().resolve().expect("defaults");
    assert_eq!(alone.cluster.membership, Membership::Alone);
    assert_eq!(alone.cluster.advertise, "127.0.0.1:4040");
    assert_eq!(
        (alone.cluster.shards, alone.cluster.replication_factor),
        (1, 3)
    );
    let peers = ServeArgs {
        listen: Some("10.0.0.1:4040".into()),
        cluster: ClusterArgs {
            node_id: Some(2),
            peers: Some(vec![
                "10.0.0.1:4040".into(),
                "10.0.0.2:4040".into(),
                " ".into(),
            ]),
            ..Default::default()
        },
        ..Default::default()
    }
    .resolve()
    .expect("valid");
    assert_eq!(peers.cluster.shards, 2, "one shard per peer by default");
    assert_eq!(peers.cluster.advertise, "10.0.0.1:4040");
    for (cluster, key) in [
        (
            ClusterArgs {
                node_id: Some(0),
                ..Default::default()
            },
            "node-id",
        ),
        (
            ClusterArgs {
                join: Some(vec!["a:1".into()]),
                peers: Some(vec!["a:1".into()]),
                ..Default::default()
            },
            "join",
        ),
        (
            ClusterArgs {
                join: Some(vec!["a:1".into()]),
                ..Default::default()
            },
            "advertise",
        ),
        (
            ClusterArgs {
                advertise: Some("no-port".into()),
                ..Default::default()
            },
            "advertise",
        ),
        (
            ClusterArgs {
                advertise: Some("me:1".into()),
                peers: Some(vec!["other:1".into()]),
                ..Default::default()
            },
            "peers",
        ),
        (
            ClusterArgs {
                statefulset_pod: Some("firn".into()),
                ..Default::default()
            },
            "statefulset-pod",
        ),
        (
            ClusterArgs {
                statefulset_pod: Some("firn-x1".into()),
                ..Default::default()
            },
            "statefulset-pod",
        ),
        (
            ClusterArgs {
                shards: Some(0),
                ..Default::default()
            },
            "shards",
        ),
        (
            ClusterArgs {
                replication_factor: Some(9),
                ..Default::default()
            },
            "replication-factor",
        ),
    ] {
        let err = ServeArgs {
            cluster,
            ..Default::default()
        }
        .resolve()
        .expect_err("invalid")
        .to_string();
        assert!(err.starts_with(key), "{key}: {err}");
    }
}

#[test]
fn a_statefulset_pod_is_node_ordinal_plus_one_and_a_later_pod_joins() {
    let peers: Vec<String> = (0..3)
        .map(|i| format!("firn-{i}.firn-headless.ns.svc.cluster.local:4040"))
        .collect();
    let pod = |ordinal: u32| {
        ServeArgs {
            cluster: ClusterArgs {
                statefulset_pod: Some(format!("firn-{ordinal}")),
                advertise: Some(format!(
                    "firn-{ordinal}.firn-headless.ns.svc.cluster.local:4040"
                )),
                peers: Some(peers.clone()),
                ..Default::default()
            },
            ..Default::default()
        }
        .resolve()
        .expect("valid")
        .cluster
    };
    let first = pod(0);
    assert_eq!(first.node_id, crate::ids::NodeId(1));
    assert_eq!(first.membership, Membership::Peers(peers.clone()));
    assert_eq!(first.shards, 3, "one shard per initial pod");
    assert!(
        first.reserve_id,
        "a pod on a fresh volume asks a formed cluster for its id"
    );
    let later = pod(4);
    assert_eq!(later.node_id, crate::ids::NodeId(5));
    assert_eq!(later.membership, Membership::Join(peers.clone()));
    assert!(
        later.reserve_id,
        "a later pod asks for its id on a fresh volume"
    );
    // A founding pod whose address is not among the peers is a mistake, not a joiner.
    let misnamed = ServeArgs {
        cluster: ClusterArgs {
            statefulset_pod: Some("firn-1".into()),
            advertise: Some("firn-1.elsewhere:4040".into()),
            peers: Some(peers.clone()),
            ..Default::default()
        },
        ..Default::default()
    }
    .resolve()
    .expect_err("refused")
    .to_string();
    assert!(misnamed.starts_with("peers"), "{misnamed}");
    // --node-id still wins.
    let pinned = ServeArgs {
        cluster: ClusterArgs {
            statefulset_pod: Some("firn-0".into()),
            node_id: Some(7),
            ..Default::default()
        },
        ..Default::default()
    }
    .resolve()
    .expect("valid");
    assert_eq!(pinned.cluster.node_id, crate::ids::NodeId(7));
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
