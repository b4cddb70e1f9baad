//! Pyroscope's legacy HTTP query API against a live node: flamebearer JSON with its timeline
//! and groups, the diff, labels and label values, and refusals that name the parameter.

use serde_json::{Value, json};

use crate::harness::{CPU, Server, get, urlencode};

fn json_get(server: &Server, path: &str) -> (u16, Value) {
    let (status, body) = get(&format!("{}{path}", server.url));
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, value)
}

/// The (name, total, self) of every node of a level, from its delta-encoded 4-int layout.
fn level(fb: &Value, depth: usize) -> Vec<(String, i64, i64)> {
    let names = fb["names"].as_array().expect("names");
    fb["levels"][depth]
        .as_array()
        .expect("level")
        .chunks(4)
        .map(|n| {
            let name = names[n[3].as_u64().expect("index") as usize]
                .as_str()
                .expect("name");
            (
                name.to_owned(),
                n[1].as_i64().expect("total"),
                n[2].as_i64().expect("self"),
            )
        })
        .collect()
}

#[test]
fn render_answers_flamebearer_with_a_timeline_and_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    // 10 ms a sample (sample rate 100): 30 + 10 samples on pod a, 20 on pod b.
    for (name, text) in [
        ("legacy.cpu{pod=a}", "main;hot 30\nmain;cold 10\n"),
        ("legacy.cpu{pod=b}", "main;hot 20\n"),
        ("other.cpu", "main;elsewhere 5\n"),
    ] {
        let (status, body) = server.ingest_folded(name, text);
        assert_eq!(status, 200, "{body}");
    }
    let ms = 10_000_000i64;
    let query = urlencode(&format!("{CPU}{{service_name=\"legacy\"}}"));
    let (status, r) = json_get(
        &server,
        &format!("/pyroscope/render?query={query}&from=now-1h&until=now%2B1m&groupBy=pod"),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["version"], 1);
    let fb = &r["flamebearer"];
    assert_eq!(fb["numTicks"], 60 * ms);
    assert_eq!(level(fb, 0), vec![("total".into(), 60 * ms, 0)]);
    assert_eq!(level(fb, 1), vec![("main".into(), 60 * ms, 0)]);
    let mut leaves = level(fb, 2);
    leaves.sort();
    assert_eq!(
        leaves,
        vec![
            ("cold".into(), 10 * ms, 10 * ms),
            ("hot".into(), 50 * ms, 50 * ms)
        ]
    );
    assert_eq!(fb["maxSelf"], 50 * ms);
    assert_eq!(
        r["metadata"],
        json!({"format": "single", "spyName": "", "sampleRate": 1_000_000_000, "units": "samples", "name": "cpu"})
    );
    let timeline = &r["timeline"];
    let sum = |t: &Value| -> i64 {
        t["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .map(|v| v.as_i64().expect("n"))
            .sum()
    };
    assert_eq!(sum(timeline), 60 * ms, "{timeline}");
    assert_eq!(timeline["durationDelta"], 15);
    assert_eq!(timeline["startTime"].as_i64().expect("start") % 15, 0);
    assert_eq!(sum(&r["groups"]["a"]), 40 * ms, "{}", r["groups"]);
    assert_eq!(sum(&r["groups"]["b"]), 20 * ms);
    assert_eq!(r["groups"].as_object().expect("groups").len(), 2);

    // The diff: pod a against pod b.
    let side = |pod: &str| urlencode(&format!("{CPU}{{service_name=\"legacy\",pod=\"{pod}\"}}"));
    let (status, d) = json_get(
        &server,
        &format!(
            "/pyroscope/render-diff?leftQuery={}&leftFrom=now-1h&leftUntil=now%2B1m&rightQuery={}&rightFrom=now-1h&rightUntil=now%2B1m",
            side("a"),
            side("b")
        ),
    );
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["metadata"]["format"], "double");
    assert_eq!(
        (d["leftTicks"].clone(), d["rightTicks"].clone()),
        (json!(40 * ms), json!(20 * ms))
    );
    let root: Vec<i64> = d["flamebearer"]["levels"][0]
        .as_array()
        .expect("root")
        .iter()
        .map(|v| v.as_i64().expect("n"))
        .collect();
    assert_eq!(root.len(), 7, "7-int nodes: {root:?}");
    assert_eq!((root[1], root[4]), (40 * ms, 20 * ms));

    // Labels and values.
    let (_, values) = json_get(&server, "/pyroscope/label-values?label=service_name");
    assert_eq!(values, json!(["legacy", "other"]));
    let (_, types) = json_get(&server, "/pyroscope/label-values?label=__name__");
    assert!(
        types.as_array().expect("types").contains(&json!(CPU)),
        "{types}"
    );
    let (_, pods) = json_get(
        &server,
        &format!("/pyroscope/label-values?label=pod&query={query}"),
    );
    assert_eq!(pods, json!(["a", "b"]));
    let (_, names) = json_get(&server, "/pyroscope/labels");
    assert!(
        names.as_array().expect("names").contains(&json!("pod")),
        "{names}"
    );

    // Refusals name what was wrong.
    for (path, status, needle) in [
        ("/pyroscope/render?from=now-1h".to_owned(), 400, "query"),
        (
            format!("/pyroscope/render?query={query}&format=dot"),
            501,
            "format=dot",
        ),
        (
            format!("/pyroscope/render?query={query}&from=yesterday"),
            400,
            "from",
        ),
        (
            format!("/pyroscope/render?query={query}&groupBy=bad%20name"),
            400,
            "groupBy",
        ),
        ("/pyroscope/label-values".to_owned(), 400, "label"),
        (
            format!("/pyroscope/render-diff?leftQuery={query}"),
            400,
            "rightQuery",
        ),
    ] {
        let (got, body) = get(&format!("{}{path}", server.url));
        assert_eq!(got, status, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }
}
