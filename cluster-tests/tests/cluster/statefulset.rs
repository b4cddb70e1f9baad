//! The chart's pods run: the flags, environment and files the rendered StatefulSet gives a pod
//! are accepted by the real `firn serve --check-config`, and three `firn` processes configured
//! exactly so (each in its own network namespace, the headless Service's pod names resolving
//! to them) form one cluster that takes writes on one pod and answers them on another.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helm::{
    NAMESPACE, args, cluster_values, container, one, python, render_valid, render_valid_upgrade,
};

/// The files a pod's volumes hold, under `root` (its mount paths), from the rendered ConfigMap
/// and Secrets.
fn mount_files(manifests: &[Value], root: &Path) {
    let sts = one(manifests, "StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];
    let by_name = |kind: &str, name: &str| {
        manifests
            .iter()
            .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name}"))
            .clone()
    };
    for mount in container(sts)["volumeMounts"].as_array().expect("mounts") {
        let volume = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == mount["name"]);
        let dir = root.join(
            mount["mountPath"]
                .as_str()
                .expect("path")
                .trim_start_matches('/'),
        );
        std::fs::create_dir_all(&dir).expect("mount dir");
        let Some(volume) = volume else { continue };
        let files: BTreeMap<String, String> = if let Some(cm) = volume.get("configMap") {
            let map = by_name("ConfigMap", cm["name"].as_str().expect("name"));
            serde_json::from_value(map["data"].clone()).expect("data")
        } else if let Some(secret) = volume.get("secret") {
            let s = by_name("Secret", secret["secretName"].as_str().expect("name"));
            let data: BTreeMap<String, String> =
                serde_json::from_value(s["data"].clone()).expect("data");
            data.into_iter()
                .map(|(k, v)| (k, base64_decode(&v)))
                .collect()
        } else {
            continue;
        };
        for (name, content) in files {
            std::fs::write(dir.join(name), content).expect("write mounted file");
        }
    }
}

fn base64_decode(text: &str) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = alphabet.iter().position(|&a| a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// The container's args and environment as the kubelet would give them to pod `pod`: `$(VAR)`
/// expanded, Secret references resolved, and absolute paths under `root` (where
/// [`mount_files`] put the volumes).
pub fn pod_command(
    manifests: &[Value],
    pod: &str,
    root: &Path,
) -> (Vec<String>, BTreeMap<String, String>) {
    let sts = one(manifests, "StatefulSet");
    let mut env = BTreeMap::new();
    for var in container(sts)["env"].as_array().expect("env") {
        let name = var["name"].as_str().expect("name").to_owned();
        let value = if let Some(v) = var.get("value") {
            v.as_str().expect("value").to_owned()
        } else if var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name" {
            pod.to_owned()
        } else if let Some(r) = var["valueFrom"].get("secretKeyRef") {
            let secret = manifests
                .iter()
                .find(|m| m["kind"] == "Secret" && m["metadata"]["name"] == r["name"])
                .expect("referenced Secret");
            base64_decode(
                secret["data"][r["key"].as_str().expect("key")]
                    .as_str()
                    .expect("data"),
            )
        } else {
            panic!("unhandled env var {var}");
        };
        env.insert(name, value);
    }
    let rooted = |text: &str| {
        text.replace("/etc/firn/", &format!("{}/etc/firn/", root.display()))
            .replace("/var/lib/firn", &format!("{}/var/lib/firn", root.display()))
    };
    let args = args(sts)
        .iter()
        .map(|a| {
            let mut a = rooted(a);
            for (name, value) in &env {
                a = a.replace(&format!("$({name})"), value);
            }
            a
        })
        .collect();
    // The config file's paths live under the same root.
    for entry in std::fs::read_dir(root.join("etc/firn/config")).expect("config mount") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, rooted(&text)).expect("write");
    }
    (args, env)
}

#[test]
fn the_rendered_pod_passes_firn_serve_check_config() {
    let Some(python) = python() else { return };
    for (values, pod, node_id, membership) in [
        (cluster_values(3), "firn-1", 2, "Peers"),
        // A pod added by scaling up joins the founding three.
        (
            {
                let mut v = cluster_values(5);
                v["cluster"]["initialNodes"] = json!(3);
                v
            },
            "firn-4",
            5,
            "Join",
        ),
        (json!({}), "firn-0", 1, "Peers"),
    ] {
        let manifests = render_valid(&python, &values);
        let dir = tempfile::tempdir().expect("tempdir");
        mount_files(&manifests, dir.path());
        let (args, env) = pod_command(&manifests, pod, dir.path());
        let out = Command::new(firn_cluster_tests::binary::firn())
            .args(&args)
            .arg("--check-config")
            .env_clear()
            .envs(&env)
            .output()
            .expect("run firn");
        let printed = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {printed}");
        let compact: String = printed.split_whitespace().collect();
        assert!(
            compact.contains(&format!("node_id:NodeId({node_id},)"))
                || compact.contains(&format!("node_id:NodeId({node_id})")),
            "{pod}: node {node_id}: {printed}"
        );
        assert!(
            compact.contains(&format!("membership:{membership}(")),
            "{pod}: {membership}: {printed}"
        );
        assert!(
            printed.contains(&format!(
                "{pod}.firn-headless.{NAMESPACE}.svc.cluster.local:4040"
            )),
            "{printed}"
        );
        if values["objectStorage"]["url"].is_string() {
            assert!(printed.contains("firn-blocks"), "{printed}");
        }
    }
}

/// Name resolution for a test network namespace: `ip netns exec NS` bind-mounts
/// `/etc/netns/NS/hosts` over `/etc/hosts`. Removed on drop.
struct HostsFiles(Vec<std::path::PathBuf>);

impl HostsFiles {
    fn write(namespaces: &[String], entries: &str) -> Self {
        let mut dirs = Vec::new();
        for ns in namespaces {
            let dir = Path::new("/etc/netns").join(ns);
            std::fs::create_dir_all(&dir).expect("/etc/netns/NS");
            std::fs::write(
                dir.join("hosts"),
                format!("127.0.0.1 localhost\n::1 localhost\n{entries}"),
            )
            .expect("hosts file");
            dirs.push(dir);
        }
        Self(dirs)
    }
}

impl Drop for HostsFiles {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A `firn` process run as pod `i` of the rendered StatefulSet, killed on drop.
struct Pod {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Pod {
    fn log_tail(&self) -> String {
        firn_cluster_tests::node::log_tail(&self.log)
    }
}

/// What each pod logged, for a failure's message.
fn logs(pods: &[Pod]) -> String {
    pods.iter()
        .map(Pod::log_tail)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three pods configured exactly as the chart renders them (args, environment, config file,
/// admin token, the port and listen address of the ConfigMap) form one cluster: every pod
/// ready, three nodes with ids 1 to 3 at their pod names, every shard led, and a write taken by
/// one pod is answered by the others.
#[test]
fn three_pods_configured_as_the_statefulset_form_one_cluster() {
    let Some(python) = python() else { return };
    let _one_at_a_time = firn_cluster_tests::exclusive();
    let net = std::sync::Arc::new(firn_cluster_tests::net::Net::new(3));
    if !net.partitionable() {
        eprintln!(
            "skipped: pods need their own network namespaces (root) to listen on the chart's \
             0.0.0.0:4040 and resolve their pod names"
        );
        return;
    }
    let s3 = firn_cluster_tests::s3::S3::start(&net.gateway());
    let mut values = cluster_values(3);
    values["objectStorage"]["url"] = json!(format!("s3://{}/helm", s3.bucket));
    values["objectStorage"]["endpoint"] = json!(s3.endpoint);
    values["config"] = json!({"flushIntervalSecs": 1});
    let manifests = render_valid(&python, &values);

    let names: Vec<String> = (0..3)
        .map(|i| format!("firn-{i}.firn-headless.{NAMESPACE}.svc.cluster.local"))
        .collect();
    let hosts: String = (0..3)
        .map(|i| format!("{} {}\n", net.host(i).ip, names[i]))
        .collect();
    let namespaces: Vec<String> = (0..3)
        .map(|i| net.host(i).ns.clone().expect("a namespace"))
        .collect();
    let _hosts = HostsFiles::write(&namespaces, &hosts);

    let dir = tempfile::tempdir().expect("tempdir");
    let port = container(one(&manifests, "StatefulSet"))["ports"][0]["containerPort"]
        .as_u64()
        .expect("port");
    // Pod i as the kubelet starts it: its volumes' files under its own root, its args and env.
    let start_pod = |i: usize| {
        let root = dir.path().join(format!("firn-{i}"));
        mount_files(&manifests, &root);
        let (args, env) = pod_command(&manifests, &format!("firn-{i}"), &root);
        let log = root.join("firn.log");
        let child = net
            .command(i, firn_cluster_tests::binary::firn())
            .args(&args)
            .envs(&env)
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .expect("log"),
            )
            .spawn()
            .expect("firn starts");
        Pod { child, log }
    };
    let mut pods: Vec<Pod> = (0..3).map(start_pod).collect();
    let url = |i: usize| format!("http://{}:{port}", net.host(i).ip);
    let token = {
        let root = dir.path().join("firn-0");
        std::fs::read_to_string(root.join("etc/firn/admin/admin-token")).expect("token")
    };
    let all_ready = firn_cluster_tests::wait_until(Duration::from_secs(120), || {
        (0..3).all(|i| {
            ureq::get(&format!("{}/ready", url(i)))
                .timeout(Duration::from_secs(2))
                .call()
                .is_ok()
        })
    });
    assert!(all_ready, "pods not ready:\n{}", logs(&pods));

    let cluster_status = |i: usize| -> Value {
        ureq::get(&format!("{}/api/v1/cluster", url(i)))
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("cluster status")
            .into_string()
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .expect("json")
    };
    let status = cluster_status(2);
    let nodes = status["nodes"].as_array().expect("nodes");
    let mut seen: Vec<(u64, String)> = nodes
        .iter()
        .map(|n| {
            (
                n["id"].as_u64().expect("id"),
                n["addr"].as_str().expect("addr").to_owned(),
            )
        })
        .collect();
    seen.sort();
    let expected: Vec<(u64, String)> = (0..3)
        .map(|i| (i as u64 + 1, format!("{}:{port}", names[i])))
        .collect();
    assert_eq!(seen, expected, "{status:#}");
    let shards = status["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 3, "one shard per founding pod: {status:#}");
    assert!(
        shards.iter().all(|s| s["leader"].is_u64()),
        "every shard led: {status:#}"
    );

    // A write through pod 0, read back through pods 1 and 2.
    ureq::post(&format!(
        "{}/ingest?name=helm-app.cpu%7Bpod%3Dfirn-0%7D&format=folded",
        url(0)
    ))
    .set("Authorization", &format!("Bearer {token}"))
    .set("X-Scope-OrgID", "team-helm")
    .send_string("main;work 42\n")
    .expect("write");
    for i in [1, 2] {
        let answered = firn_cluster_tests::wait_until(Duration::from_secs(30), || {
            let query = firn_cluster_tests::client::encode(
                "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"helm-app\"}",
            );
            ureq::get(&format!(
                "{}/api/v1/merge?query={query}&from=now-1h&until=now%2B1h&format=folded",
                url(i)
            ))
            .set("Authorization", &format!("Bearer {token}"))
            .set("X-Scope-OrgID", "team-helm")
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .is_some_and(|text| text.contains("main;work"))
        });
        assert!(answered, "pod {i} answers the write");
    }

    // `helm upgrade --set replicas=2`: the chart's pre-upgrade Job, run as rendered (its
    // Service address mapped to pod 0), removes node 3 before the StatefulSet drops firn-2.
    let mut smaller = values.clone();
    smaller["replicas"] = json!(2);
    let upgrade = render_valid_upgrade(&python, &smaller);
    let job = one(&upgrade, "Job");
    let spec = &job["spec"]["template"]["spec"]["containers"][0];
    let job_args: Vec<String> = spec["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            let a = a.as_str().expect("arg");
            if a.starts_with("--url=") {
                format!("--url={}", url(0))
            } else {
                a.to_owned()
            }
        })
        .collect();
    assert_eq!(spec["env"][0]["name"], "FIRN_TOKEN");
    let shrunk = Command::new(firn_cluster_tests::binary::firn())
        .args(&job_args)
        .env("FIRN_TOKEN", &token)
        .output()
        .expect("run the hook's command");
    assert!(
        shrunk.status.success(),
        "{job_args:?}: {}{}",
        String::from_utf8_lossy(&shrunk.stdout),
        String::from_utf8_lossy(&shrunk.stderr)
    );
    let status = cluster_status(0);
    assert_eq!(status["retired"], json!([3]), "{status:#}");
    // Run again, as every upgrade does: nothing more to remove.
    let again = Command::new(firn_cluster_tests::binary::firn())
        .args(&job_args)
        .env("FIRN_TOKEN", &token)
        .output()
        .expect("run the hook's command");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to remove"));

    // The StatefulSet drops firn-2 and its claim; scaled back to 3, firn-2 starts on a fresh
    // volume. Its id (3) was retired, so it asks the cluster for one and joins as node 4.
    drop(pods.pop());
    std::fs::remove_dir_all(dir.path().join("firn-2/var/lib/firn")).expect("drop the claim");
    pods.push(start_pod(2));
    let back = firn_cluster_tests::wait_until(Duration::from_secs(120), || {
        ureq::get(&format!("{}/ready", url(2)))
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok()
    });
    assert!(back, "firn-2 back:\n{}", logs(&pods));
    let status = cluster_status(0);
    let firn_2 = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["addr"] == format!("{}:{port}", names[2]))
        .expect("firn-2 is a member again")
        .clone();
    assert_eq!(firn_2["id"], 4, "{status:#}");
    assert_eq!(firn_2["state"], "active");
}
