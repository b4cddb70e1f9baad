//! The `firn` CLI against a live node: `firn ingest` with labels and a progress bar's worth of
//! files, `firn query merge` in every format, `firn sql`, and errors that reach the user.

use std::process::{Command, Output};

use firn_storage::pprof;
use firn_storage::testing::ProfileBuilder;

use crate::harness::{CPU, Server};

fn firn(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(args)
        .env("FIRN_URL", &server.url)
        .env("FIRN_LOG", "warn")
        .output()
        .expect("run firn")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "firn failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

#[test]
fn ingest_query_and_sql_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]);

    // Three folded files and one gzipped pprof, labelled.
    let mut files = Vec::new();
    for (i, text) in [
        "main;hot 70\nmain;cold 5\n",
        "main;hot 20\n",
        "main;warm 5\n",
    ]
    .iter()
    .enumerate()
    {
        let path = dir.path().join(format!("shop-{i}.txt"));
        std::fs::write(&path, text).expect("write");
        files.push(path);
    }
    let mut profile = ProfileBuilder::cpu();
    profile.sample(&["main", "hot"], &[10, 100_000_000], &[]);
    let pprof_path = dir.path().join("shop.pb.gz");
    std::fs::write(&pprof_path, profile.gzip()).expect("write");

    let mut args = vec!["ingest", "--service", "shop", "--label", "env=prod"];
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let output = firn(&server, &args);
    let _ = stdout(&output);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("sent 3 of 3 files"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = stdout(&firn(
        &server,
        &[
            "ingest",
            "--service",
            "shop-pprof",
            &pprof_path.display().to_string(),
        ],
    ));

    // Folded `.cpu` uploads are CPU time: each sample is 10 ms at the default 100 Hz.
    let selector = format!("{CPU}{{service_name=\"shop\",env=\"prod\"}}");
    let range = ["--from", "now-1h", "--to", "now+1h"];
    let mut merge = vec!["query", "merge", "--selector", &selector];
    merge.extend(range);
    let mut folded_args = merge.clone();
    folded_args.extend(["--format", "folded"]);
    let folded = stdout(&firn(&server, &folded_args));
    let lines: std::collections::BTreeMap<&str, i64> = folded
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(stack, v)| (stack, v.parse().expect("value")))
        .collect();
    const MS10: i64 = 10_000_000;
    assert_eq!(lines.get("main;hot"), Some(&(90 * MS10)), "{folded}");
    assert_eq!(lines.get("main;cold"), Some(&(5 * MS10)), "{folded}");
    assert_eq!(lines.get("main;warm"), Some(&(5 * MS10)), "{folded}");

    let top = stdout(&firn(&server, &merge));
    let first = top.lines().nth(1).expect("a row");
    assert!(first.ends_with("hot"), "hot leads the top table: {top}");
    assert!(first.contains("90.00%"), "{top}");

    let out = dir.path().join("merged.pb.gz");
    let mut pprof_args = merge.clone();
    pprof_args.extend(["--format", "pprof", "--output", out.to_str().expect("path")]);
    let _ = stdout(&firn(&server, &pprof_args));
    let merged = pprof::decode(
        &std::fs::read(&out).expect("read"),
        pprof::DecodeLimits::default(),
    )
    .expect("a valid pprof")
    .into_profile();
    let total: i64 = merged.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(total, 100 * MS10);

    // The pprof file keeps its own sample types.
    let counts = "process_cpu:samples:count:cpu:nanoseconds{service_name=\"shop-pprof\"}";
    let mut count_args = vec!["query", "merge", "--selector", counts, "--format", "folded"];
    count_args.extend(range);
    assert_eq!(stdout(&firn(&server, &count_args)).trim(), "main;hot 10");

    // Labels and series.
    let names = stdout(&firn(&server, &["query", "labels"]));
    assert!(names.lines().any(|l| l == "env"), "{names}");
    assert!(names.lines().any(|l| l == "service_name"), "{names}");
    let values = stdout(&firn(&server, &["query", "labels", "--name", "env"]));
    assert_eq!(values.trim(), "prod");
    let mut series_args = vec![
        "query",
        "series",
        "--selector",
        &selector,
        "--group-by",
        "env",
        "--step",
        "1m",
    ];
    series_args.extend(range);
    let text = stdout(&firn(&server, &series_args));
    assert!(text.starts_with("{env=prod}"), "{text}");
    series_args.extend(["--format", "json"]);
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&firn(&server, &series_args))).expect("json");
    let points = json["series"][0]["points"].as_array().expect("points");
    let sum: f64 = points.iter().map(|p| p[1].as_f64().expect("value")).sum();
    assert_eq!(sum, (100 * MS10) as f64, "{json}");

    let sql = stdout(&firn(
        &server,
        &[
            "sql",
            "SELECT count(*) AS n FROM samples WHERE \"labels.service_name\" = 'shop'",
        ],
    ));
    assert!(sql.contains('n'), "{sql}");
    let json = stdout(&firn(
        &server,
        &[
            "sql",
            "--format",
            "json",
            "SELECT count(*) AS n FROM samples WHERE \"labels.service_name\" = 'shop'",
        ],
    ));
    let value: serde_json::Value = serde_json::from_str(&json).expect("json");
    let rows = value["rows"][0][0].as_str().expect("a count");
    assert!(rows.parse::<u64>().expect("number") >= 4, "{json}");

    // Errors from the node reach the user with its message, and a failing exit status.
    let bad = firn(
        &server,
        &["query", "merge", "--selector", "not a selector{"],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("400"), "{stderr}");
    let unreachable = Command::new(env!("CARGO_BIN_EXE_firn"))
        .args(["sql", "SELECT 1", "--url", "http://127.0.0.1:1"])
        .output()
        .expect("run");
    assert!(!unreachable.status.success());
}
