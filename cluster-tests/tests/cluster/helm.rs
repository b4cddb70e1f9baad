//! The Helm chart (`helm/firn`): Helm's own lint and template over several installs, the
//! rendered manifests validated against the Kubernetes schemas, and the Dockerfile in step with
//! the chart (`statefulset.rs` runs the rendered pods). Rendering is `helm/tests/chart.py`
//! (helm-python-sdk, kubernetes-validate); without those modules the tests are skipped with a
//! note (`.ci/test` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

pub const NAMESPACE: &str = "observability";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cluster-tests crate is in the repository")
        .to_path_buf()
}

pub fn python() -> Option<String> {
    let python = std::env::var("FIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import helm_python, kubernetes_validate, yaml"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has {
        Some(python)
    } else {
        eprintln!(
            "skipped: {python} has no helm-python-sdk / kubernetes-validate (bash .ci/test installs them)"
        );
        None
    }
}

/// Lints and renders the chart with `values` as an install: the renderer's JSON answer.
pub fn render(python: &str, values: &Value) -> Value {
    render_as(python, values, false)
}

/// Lints and renders the chart with `values`, as `helm upgrade` when `upgrade`.
fn render_as(python: &str, values: &Value, upgrade: bool) -> Value {
    let out = Command::new(python)
        .arg(repo().join("helm/tests/chart.py"))
        .arg(repo().join("helm/firn"))
        .arg(values.to_string())
        .args(["--name", "firn", "--namespace", NAMESPACE])
        .args(upgrade.then_some("--upgrade"))
        .output()
        .expect("run chart.py");
    assert!(
        out.status.success(),
        "chart.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("chart.py prints JSON")
}

/// Renders values the chart must accept at install: no lint error, no schema violation.
pub fn render_valid(python: &str, values: &Value) -> Vec<Value> {
    render_valid_as(python, values, false)
}

/// Renders values the chart must accept at an upgrade.
pub fn render_valid_upgrade(python: &str, values: &Value) -> Vec<Value> {
    render_valid_as(python, values, true)
}

fn render_valid_as(python: &str, values: &Value, upgrade: bool) -> Vec<Value> {
    let out = render_as(python, values, upgrade);
    assert_eq!(
        out["lint"]["errors"],
        json!([]),
        "lint of {values}: {out:#}"
    );
    assert!(out.get("error").is_none(), "{values}: {}", out["error"]);
    assert_eq!(out["invalid"], json!([]), "{values}");
    out["manifests"].as_array().expect("manifests").to_vec()
}

pub fn one<'a>(manifests: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = manifests.iter().filter(|m| m["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn kinds(manifests: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = manifests
        .iter()
        .map(|m| m["kind"].as_str().expect("kind").to_owned())
        .collect();
    kinds.sort();
    kinds
}

/// A cluster's values: `replicas` pods over S3.
pub fn cluster_values(replicas: u32) -> Value {
    json!({
        "replicas": replicas,
        "cluster": {"initialNodes": replicas, "shards": replicas},
        "objectStorage": {
            "url": "s3://firn-blocks/prod",
            "endpoint": "http://minio.storage:9000",
            "accessKeyId": "AKIAFIRNTEST",
            "secretAccessKey": "firn-test-secret-key",
        },
    })
}

pub fn container(statefulset: &Value) -> &Value {
    &statefulset["spec"]["template"]["spec"]["containers"][0]
}

pub fn args(statefulset: &Value) -> Vec<String> {
    container(statefulset)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("--{name}=");
    args.iter().find_map(|a| a.strip_prefix(prefix.as_str()))
}

/// What every install renders: the StatefulSet's shape, the Services, probes and security.
fn check_common(manifests: &[Value], replicas: u64) {
    let sts = one(manifests, "StatefulSet");
    assert_eq!(sts["spec"]["replicas"], replicas);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    let headless = manifests
        .iter()
        .find(|m| m["kind"] == "Service" && m["spec"]["clusterIP"] == "None")
        .expect("a headless Service");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    assert_eq!(sts["spec"]["serviceName"], headless["metadata"]["name"]);
    assert!(
        manifests
            .iter()
            .any(|m| m["kind"] == "Service" && m["spec"]["clusterIP"] != "None"),
        "a client Service"
    );
    let c = container(sts);
    assert!(c.get("command").is_none(), "the image's entrypoint runs");
    assert_eq!(args(sts)[0], "serve");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_u64()
            .is_some_and(|s| s >= 60),
        "time to hand off"
    );
    assert!(c["resources"]["requests"]["memory"].is_string());
}

#[test]
fn the_chart_lints_and_renders_valid_manifests_for_each_kind_of_install() {
    let Some(python) = python() else { return };

    // Defaults: one pod on its own volume, a generated admin token.
    let defaults = render_valid(&python, &json!({}));
    check_common(&defaults, 1);
    assert_eq!(
        kinds(&defaults),
        [
            "ConfigMap",
            "Job",
            "Secret",
            "Service",
            "Service",
            "ServiceAccount",
            "StatefulSet"
        ]
    );
    let sts = one(&defaults, "StatefulSet");
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(
        claim["metadata"]["name"], "data",
        "a claim per pod for the Raft log"
    );
    let secret = one(&defaults, "Secret");
    let token = secret["data"]["admin-token"].as_str().expect("token");
    assert!(token.len() >= 24, "a generated token: {token}");

    // Single node without persistence.
    let single = render_valid(
        &python,
        &json!({"persistence": {"enabled": false, "size": "1Gi"}}),
    );
    check_common(&single, 1);
    assert!(
        one(&single, "StatefulSet")["spec"]
            .get("volumeClaimTemplates")
            .is_none()
    );

    // Five nodes over S3: a PodDisruptionBudget of one, spread over nodes and zones, and the
    // five founding pods as peers.
    let five = render_valid(&python, &cluster_values(5));
    check_common(&five, 5);
    let pdb = one(&five, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let sts = one(&five, "StatefulSet");
    let sts_args = args(sts);
    let peers: Vec<&str> = flag(&sts_args, "peers")
        .expect("--peers")
        .split(',')
        .collect();
    assert_eq!(peers.len(), 5);
    assert_eq!(
        peers[4],
        format!("firn-4.firn-headless.{NAMESPACE}.svc.cluster.local:4040")
    );
    let spread = sts["spec"]["template"]["spec"]["topologySpreadConstraints"]
        .as_array()
        .expect("spread");
    let keys: Vec<&str> = spread
        .iter()
        .map(|s| s["topologyKey"].as_str().expect("key"))
        .collect();
    assert_eq!(
        keys,
        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    );
    // Before an upgrade, the nodes above `replicas` leave the cluster.
    let hook = one(&five, "Job");
    assert_eq!(
        hook["metadata"]["annotations"]["helm.sh/hook"],
        "pre-upgrade"
    );
    let hook_args: Vec<&str> = hook["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg"))
        .collect();
    assert_eq!(&hook_args[1..4], ["cluster", "shrink", "--to=5"]);
    let storage = five
        .iter()
        .find(|m| m["kind"] == "Secret" && m["metadata"]["name"] == "firn-object-storage")
        .expect("the object-storage Secret");
    assert!(storage["data"]["AWS_SECRET_ACCESS_KEY"].is_string());

    // Existing Secrets: the chart creates none and the pods read the given ones.
    let mut existing = cluster_values(3);
    existing["objectStorage"] =
        json!({"url": "s3://firn-blocks/prod", "existingSecret": "s3-credentials"});
    existing["auth"] = json!({"mode": "token", "existingSecret": "firn-operator"});
    let with_existing = render_valid(&python, &existing);
    check_common(&with_existing, 3);
    assert!(
        with_existing.iter().all(|m| m["kind"] != "Secret"),
        "no Secret rendered"
    );
    let text = serde_json::to_string(one(&with_existing, "StatefulSet")).expect("json");
    assert!(text.contains("\"s3-credentials\"") && text.contains("\"firn-operator\""));

    // A ServiceMonitor scraping every pod with the operator's token.
    let mut monitored = cluster_values(3);
    monitored["serviceMonitor"] = json!({"enabled": true, "labels": {"release": "prometheus"}});
    let with_monitor = render_valid(&python, &monitored);
    let monitor = one(&with_monitor, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["key"],
        "admin-token"
    );
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");

    // No authentication: no token Secret, no token mount.
    let open = render_valid(&python, &json!({"auth": {"mode": "none"}}));
    assert!(open.iter().all(|m| m["kind"] != "Secret"));
    let config = one(&open, "ConfigMap")["data"]["firn.toml"]
        .as_str()
        .expect("toml")
        .to_owned();
    assert!(config.contains("auth = \"none\"") && !config.contains("admin_token_file"));
}

#[test]
fn the_chart_refuses_bad_values_naming_them() {
    let Some(python) = python() else { return };
    let mut no_store = cluster_values(3);
    no_store["objectStorage"]["url"] = json!("");
    let mut too_many_founders = cluster_values(3);
    too_many_founders["cluster"]["initialNodes"] = json!(5);
    let mut no_volumes = cluster_values(3);
    no_volumes["persistence"] = json!({"enabled": false, "size": "1Gi"});
    for (values, names) in [
        (json!({"replicas": 0}), "replicas"),
        (json!({"auth": {"mode": "open"}}), "mode"),
        (
            json!({"auth": {"mode": "token", "adminToken": "short"}}),
            "adminToken",
        ),
        (json!({"objectStorage": {"url": "gs://bucket"}}), "url"),
        (
            json!({"cluster": {"replicationFactor": 9}}),
            "replicationFactor",
        ),
        (json!({"replica": 3}), "replica"),
        (no_store, "objectStorage.url"),
        (too_many_founders, "cluster.initialNodes"),
        (no_volumes, "persistence.enabled"),
    ] {
        let out = render(&python, &values);
        let error = out["error"].as_str().unwrap_or_default();
        assert!(error.contains(names), "{values}: {out:#}");
    }
}

/// The Dockerfile's entrypoint, port, user and data directory are the chart's.
#[test]
fn the_dockerfile_matches_the_chart() {
    let Some(python) = python() else { return };
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    // The runtime stage: everything after the last FROM.
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map(|(_, r)| r)
        .expect("a multi-stage build");
    assert!(dockerfile.matches("\nFROM ").count() >= 1 && dockerfile.starts_with("#"));
    let instruction = |name: &str| -> String {
        runtime
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in the runtime stage"))
            .trim()
            .to_owned()
    };
    let manifests = render_valid(&python, &cluster_values(3));
    let sts = one(&manifests, "StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];
    let c = container(sts);

    let entrypoint: Vec<String> =
        serde_json::from_str(&instruction("ENTRYPOINT")).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint.len(), 1);
    assert!(entrypoint[0].ends_with("/firn"), "{entrypoint:?}");
    assert!(
        runtime.contains(&format!("COPY --from=build /out/firn {}", entrypoint[0])),
        "the entrypoint is the built binary"
    );
    assert_eq!(
        args(sts)[0],
        "serve",
        "the chart's args follow the entrypoint"
    );

    assert_eq!(
        instruction("EXPOSE"),
        c["ports"][0]["containerPort"].to_string()
    );
    let user = instruction("USER");
    let (uid, gid) = user.split_once(':').expect("USER uid:gid");
    assert_eq!(uid, pod["securityContext"]["runAsUser"].to_string());
    assert_eq!(gid, pod["securityContext"]["runAsGroup"].to_string());
    assert!(uid.parse::<u32>().is_ok_and(|u| u != 0), "non-root");

    let data = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == "data")
        .expect("data mount")["mountPath"]
        .as_str()
        .expect("path")
        .to_owned();
    assert_eq!(instruction("VOLUME"), format!("[\"{data}\"]"));
    assert_eq!(instruction("ENV"), format!("FIRN_DATA_DIR={data}"));
    let config = one(&manifests, "ConfigMap")["data"]["firn.toml"]
        .as_str()
        .expect("toml")
        .to_owned();
    assert!(config.contains(&format!("data_dir = \"{data}\"")));
}
