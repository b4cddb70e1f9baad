//! Multi-tenancy against a live `firn serve --auth=token`: the isolation matrix (tenant beta
//! tries every surface on alpha's data with its own token, a forged header, no token and a
//! revoked token), the admin API, Basic auth as the SDKs send it, revocation, and metering.

use base64::Engine;
use firn_storage::Nanos;
use firn_storage::testing::ProfileBuilder;
use serde_json::{Value, json};

use crate::harness::{CPU, Server, now_nanos, urlencode};

pub const ADMIN: &str = "operator-token-0123456789abcdef";

/// An HTTP answer: status, body, and the gRPC status of a gRPC-Web answer's trailers.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} {:?} is not JSON: {e}", self.status, self.body))
    }
}

/// One request with `headers`.
pub fn call(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Answer {
    let mut request = ureq::request(method, url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    let response = match body {
        Some(b) => request.send_bytes(b),
        None => request.call(),
    };
    match response {
        Ok(r) => Answer {
            status: r.status(),
            body: r.into_string().unwrap_or_default(),
        },
        Err(ureq::Error::Status(status, r)) => Answer {
            status,
            body: r.into_string().unwrap_or_default(),
        },
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Starts a node with `--auth=token` and the operator's token.
pub fn start_token_node(dir: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec!["--auth", "token"];
    args.extend_from_slice(extra);
    Server::start_with_env(dir, &args, &[("FIRN_ADMIN_TOKEN", ADMIN)])
}

/// The operator creates `tenant` (if new) and a token of `role` for it.
pub fn token(server: &Server, tenant: &str, role: &str) -> (String, String) {
    let admin = bearer(ADMIN);
    let created = call(
        "POST",
        &format!("{}/api/v1/admin/tenants", server.url),
        &[
            ("Authorization", &admin),
            ("Content-Type", "application/json"),
        ],
        Some(json!({"id": tenant, "name": tenant}).to_string().as_bytes()),
    );
    assert!(
        created.status == 201 || created.status == 409,
        "{} {}",
        created.status,
        created.body
    );
    let t = call(
        "POST",
        &format!("{}/api/v1/admin/tenants/{tenant}/tokens", server.url),
        &[
            ("Authorization", &admin),
            ("Content-Type", "application/json"),
        ],
        Some(json!({"role": role, "name": "test"}).to_string().as_bytes()),
    );
    assert_eq!(t.status, 201, "{}", t.body);
    let j = t.json();
    assert_eq!(j["tenant"], tenant);
    (
        j["id"].as_str().expect("id").to_owned(),
        j["token"].as_str().expect("token").to_owned(),
    )
}

/// `POST /ingest` of folded text, with a token and an `X-Scope-OrgID` when given.
pub fn ingest(
    server: &Server,
    auth: Option<&str>,
    org: Option<&str>,
    name: &str,
    folded: &str,
) -> Answer {
    let mut headers = vec![("Content-Type", "text/plain")];
    let auth_value;
    if let Some(a) = auth {
        auth_value = bearer(a);
        headers.push(("Authorization", &auth_value));
    }
    if let Some(o) = org {
        headers.push(("X-Scope-OrgID", o));
    }
    call(
        "POST",
        &format!(
            "{}/ingest?name={}&format=folded",
            server.url,
            urlencode(name)
        ),
        &headers,
        Some(folded.as_bytes()),
    )
}

/// Every read surface of the node, as (what, method, path, content type, body).
fn read_surfaces() -> Vec<(&'static str, &'static str, String, &'static str, Vec<u8>)> {
    let selector = urlencode(&format!("{CPU}{{}}"));
    let range = "from=now-1h&until=now%2B1h";
    let now_ms = now_nanos() / 1_000_000;
    let querier_range = json!({"start": now_ms - 3_600_000, "end": now_ms + 3_600_000});
    let mut merge = querier_range.clone();
    merge["profile_typeID"] = json!(CPU);
    merge["labelSelector"] = json!("{}");
    let mut values = querier_range.clone();
    values["name"] = json!("service_name");
    let rfc3339 = |ms: i64| firn_node::time::format_rfc3339(ms.div_euclid(1000), 0);
    let (start, end) = (rfc3339(now_ms - 3_600_000), rfc3339(now_ms + 3_600_000));
    let parca_top = json!({
        "mode": "MODE_MERGE",
        "merge": {"query": format!("{CPU}:delta{{}}"), "start": start, "end": end},
        "reportType": "REPORT_TYPE_TOP",
    });
    let parca_values = json!({"labelName": "service_name", "start": start, "end": end});
    vec![
        (
            "merge",
            "GET",
            format!("/api/v1/merge?query={selector}&{range}&format=folded"),
            "",
            vec![],
        ),
        (
            "series",
            "GET",
            format!("/api/v1/series?query={selector}&{range}&step=60"),
            "",
            vec![],
        ),
        (
            "labels",
            "GET",
            format!("/api/v1/labels?{range}"),
            "",
            vec![],
        ),
        (
            "values",
            "GET",
            format!("/api/v1/labels/service_name/values?{range}"),
            "",
            vec![],
        ),
        (
            "types",
            "GET",
            format!("/api/v1/profile-types?{range}"),
            "",
            vec![],
        ),
        (
            "diff",
            "GET",
            format!("/api/v1/diff?query={selector}&{range}&format=folded"),
            "",
            vec![],
        ),
        (
            "pyroscope render",
            "GET",
            format!("/pyroscope/render?query={selector}&{range}"),
            "",
            vec![],
        ),
        (
            "pyroscope label-values",
            "GET",
            format!("/pyroscope/label-values?label=service_name&{range}"),
            "",
            vec![],
        ),
        (
            "sql",
            "POST",
            "/api/v1/sql".into(),
            "text/plain",
            br#"SELECT "labels.service_name", sum(value) AS v FROM samples GROUP BY 1"#.to_vec(),
        ),
        (
            "querier ProfileTypes",
            "POST",
            "/querier.v1.QuerierService/ProfileTypes".into(),
            "application/json",
            querier_range.to_string().into_bytes(),
        ),
        (
            "querier LabelValues",
            "POST",
            "/querier.v1.QuerierService/LabelValues".into(),
            "application/json",
            values.to_string().into_bytes(),
        ),
        (
            "querier SelectMergeStacktraces",
            "POST",
            "/querier.v1.QuerierService/SelectMergeStacktraces".into(),
            "application/json",
            merge.to_string().into_bytes(),
        ),
        (
            "parca Query",
            "POST",
            "/parca.query.v1alpha1.QueryService/Query".into(),
            "application/json",
            parca_top.to_string().into_bytes(),
        ),
        (
            "parca Values",
            "POST",
            "/parca.query.v1alpha1.QueryService/Values".into(),
            "application/json",
            parca_values.to_string().into_bytes(),
        ),
    ]
}

fn read(
    server: &Server,
    surface: &(&str, &str, String, &str, Vec<u8>),
    headers: &[(&str, &str)],
) -> Answer {
    let (_, method, path, content_type, body) = surface;
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if !content_type.is_empty() {
        all.push(("Content-Type", content_type));
    }
    let body = (*method == "POST").then_some(body.as_slice());
    call(method, &format!("{}{path}", server.url), &all, body)
}

#[test]
fn no_tenant_reaches_another_on_any_surface() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_token_node(dir.path(), &[]);
    let (_, alpha_writer) = token(&server, "alpha", "write");
    let (_, alpha_reader) = token(&server, "alpha", "read");
    let (_, beta) = token(&server, "beta", "admin");
    let (revoked_id, revoked) = token(&server, "beta", "read");
    let answer = call(
        "DELETE",
        &format!("{}/api/v1/admin/tokens/{revoked_id}", server.url),
        &[("Authorization", &bearer(ADMIN))],
        None,
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.json()["revoked_at"].is_i64());

    let written = ingest(
        &server,
        Some(&alpha_writer),
        None,
        "alpha-svc.cpu",
        "main;alpha_secret 100\n",
    );
    assert_eq!(written.status, 200, "{}", written.body);
    let written = ingest(
        &server,
        Some(&beta),
        Some("beta"),
        "beta-svc.cpu",
        "main;beta_own 5\n",
    );
    assert_eq!(written.status, 200, "{}", written.body);

    let (beta_auth, revoked_auth) = (bearer(&beta), bearer(&revoked));
    // (what the attacker sends, the status it must get)
    let attempts: Vec<Attempt<'_>> = vec![
        (
            "beta's token, alpha's header",
            vec![("Authorization", &beta_auth), ("X-Scope-OrgID", "alpha")],
            403,
        ),
        ("a forged header", vec![("X-Scope-OrgID", "alpha")], 401),
        ("no token", vec![], 401),
        (
            "a revoked token",
            vec![("Authorization", &revoked_auth), ("X-Scope-OrgID", "alpha")],
            401,
        ),
        (
            "a revoked token alone",
            vec![("Authorization", &revoked_auth)],
            401,
        ),
        (
            "a made-up token",
            vec![("Authorization", "Bearer firn_guess")],
            401,
        ),
        (
            "alpha|beta",
            vec![
                ("Authorization", &beta_auth),
                ("X-Scope-OrgID", "alpha|beta"),
            ],
            403,
        ),
    ];
    for surface in read_surfaces() {
        for (who, headers, status) in &attempts {
            let a = read(&server, &surface, headers);
            assert_eq!(a.status, *status, "{} with {who}: {}", surface.0, a.body);
            assert!(
                !leaks(&a.body),
                "{} with {who} leaked: {}",
                surface.0,
                a.body
            );
        }
        // Beta's own token reads beta's data and nothing of alpha's.
        let own = read(&server, &surface, &[("Authorization", &beta_auth)]);
        assert_eq!(own.status, 200, "{}: {}", surface.0, own.body);
        assert!(!leaks(&own.body), "{} leaked: {}", surface.0, own.body);
        // Alpha's reader sees alpha's.
        let alpha = read(
            &server,
            &surface,
            &[("Authorization", &bearer(&alpha_reader))],
        );
        assert_eq!(alpha.status, 200, "{}: {}", surface.0, alpha.body);
        assert!(
            !alpha.body.contains("beta"),
            "{} leaked: {}",
            surface.0,
            alpha.body
        );
    }
    let merged = read(
        &server,
        &read_surfaces()[0],
        &[("Authorization", &bearer(&alpha_reader))],
    );
    assert!(merged.body.contains("alpha_secret 100"), "{}", merged.body);
    let parca = read_surfaces()
        .into_iter()
        .find(|s| s.0 == "parca Query")
        .expect("surface");
    let parca = read(
        &server,
        &parca,
        &[("Authorization", &bearer(&alpha_reader))],
    );
    assert!(parca.body.contains("alpha_secret"), "{}", parca.body);

    // Writes: none of the attempts lands anywhere; beta's own token writes to beta.
    for (who, headers, status) in &attempts {
        let mut all = headers.clone();
        all.push(("Content-Type", "text/plain"));
        let a = call(
            "POST",
            &format!("{}/ingest?name=evil.cpu&format=folded", server.url),
            &all,
            Some(b"main;injected 1\n"),
        );
        assert_eq!(a.status, *status, "ingest with {who}: {}", a.body);
        let push = push_json(&server, &all);
        assert_eq!(push.status, *status, "push with {who}: {}", push.body);
        let mut otlp = headers.clone();
        otlp.push(("Content-Type", "application/json"));
        let export = call(
            "POST",
            &format!("{}/v1development/profiles", server.url),
            &otlp,
            Some(b"{}"),
        );
        assert_eq!(export.status, *status, "OTLP with {who}: {}", export.body);
        assert_eq!(
            export.json()["code"],
            if *status == 401 { 16 } else { 7 },
            "a google.rpc.Status: {}",
            export.body
        );
        assert!(push.body.contains(if *status == 401 {
            "unauthenticated"
        } else {
            "permission_denied"
        }));
    }
    // A read token cannot write, a write token cannot read.
    assert_eq!(
        ingest(&server, Some(&alpha_reader), None, "x.cpu", "a 1\n").status,
        403
    );
    let writer_reads = read(
        &server,
        &read_surfaces()[0],
        &[("Authorization", &bearer(&alpha_writer))],
    );
    assert_eq!(writer_reads.status, 403, "{}", writer_reads.body);
    let merged = read(
        &server,
        &read_surfaces()[0],
        &[("Authorization", &bearer(&alpha_reader))],
    );
    assert!(!merged.body.contains("injected"), "{}", merged.body);

    // SQL cannot reach another tenant through predicates, unions, joins, catalogs, functions.
    for sql in [
        r#"SELECT * FROM samples WHERE "labels.service_name" = 'alpha-svc'"#,
        r#"SELECT "labels.service_name" FROM samples UNION ALL SELECT "labels.service_name" FROM samples"#,
        r#"SELECT a."labels.service_name" FROM samples a JOIN samples b ON a.stack_id = b.stack_id"#,
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM alpha.samples",
        "SELECT * FROM read_parquet('objects')",
        "SELECT function FROM stacks",
        &format!("SELECT * FROM '{}'", dir.path().join("objects").display()),
    ] {
        let a = call(
            "POST",
            &format!("{}/api/v1/sql", server.url),
            &[
                ("Authorization", &beta_auth),
                ("Content-Type", "text/plain"),
            ],
            Some(sql.as_bytes()),
        );
        assert!(!leaks(&a.body), "{sql}: {}", a.body);
        assert!(
            a.status == 200 || a.status == 400,
            "{sql}: {} {}",
            a.status,
            a.body
        );
    }

    // gRPC-Web: the refusal is in the trailers, as gRPC's status.
    let grpc_web = call(
        "POST",
        &format!("{}/querier.v1.QuerierService/ProfileTypes", server.url),
        &[
            ("Content-Type", "application/grpc-web+proto"),
            ("X-Scope-OrgID", "alpha"),
        ],
        Some(&[0, 0, 0, 0, 0]),
    );
    assert_eq!(grpc_web.status, 200);
    assert!(
        grpc_web.body.contains("grpc-status: 16"),
        "{:?}",
        grpc_web.body
    );

    // Operator surfaces: metrics, cluster status, the admin API.
    for path in [
        "/metrics",
        "/api/v1/cluster",
        "/api/v1/admin/tenants",
        "/api/v1/admin/limits",
    ] {
        let url = format!("{}{path}", server.url);
        assert_eq!(call("GET", &url, &[], None).status, 401, "{path}");
        assert_eq!(
            call("GET", &url, &[("Authorization", &beta_auth)], None).status,
            403,
            "{path}"
        );
        assert_eq!(
            call("GET", &url, &[("Authorization", &revoked_auth)], None).status,
            401,
            "{path}"
        );
        assert_eq!(
            call("GET", &url, &[("Authorization", &bearer(ADMIN))], None).status,
            200,
            "{path}"
        );
    }
    // Beta's admin manages beta only.
    let beta_admin = [
        ("Authorization", beta_auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    for (method, path, body) in [
        ("GET", "/api/v1/admin/tenants/alpha", None),
        ("GET", "/api/v1/admin/tenants/alpha/tokens", None),
        (
            "POST",
            "/api/v1/admin/tenants/alpha/tokens",
            Some(r#"{"role":"read"}"#),
        ),
        ("GET", "/api/v1/admin/tenants/alpha/limits", None),
        (
            "PUT",
            "/api/v1/admin/tenants/beta/limits",
            Some(r#"{"ingestion_rate_bytes":0}"#),
        ),
        ("GET", "/api/v1/admin/usage?tenant=alpha", None),
        ("DELETE", "/api/v1/admin/tenants/beta", None),
    ] {
        let a = call(
            method,
            &format!("{}{path}", server.url),
            &beta_admin,
            body.map(str::as_bytes),
        );
        assert_eq!(a.status, 403, "{method} {path}: {}", a.body);
        assert!(!a.body.contains("alpha_secret"));
    }
    let own = call(
        "GET",
        &format!("{}/api/v1/admin/tenants/beta/tokens", server.url),
        &beta_admin,
        None,
    );
    assert_eq!(own.status, 200, "{}", own.body);
    assert!(
        !own.body.contains("firn_"),
        "token secrets are never listed: {}",
        own.body
    );
    let own_usage = call(
        "GET",
        &format!("{}/api/v1/admin/usage", server.url),
        &beta_admin,
        None,
    );
    assert_eq!(own_usage.status, 200, "{}", own_usage.body);
    let tenants = own_usage.json()["tenants"]
        .as_object()
        .expect("tenants")
        .clone();
    assert!(tenants.keys().all(|t| t == "beta"), "{tenants:?}");

    // Node-to-node gRPC and Flight take the nodes' credential, not a tenant's token.
    internal_surfaces_refuse(&server, &[None, Some(beta.as_str()), Some(ADMIN)]);
}

/// What an attacker sends (described, as headers) and the status it must get.
type Attempt<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

/// True when an answer shows any of alpha's data.
fn leaks(body: &str) -> bool {
    body.contains("alpha_secret") || body.contains("alpha-svc")
}

fn push_json(server: &Server, headers: &[(&str, &str)]) -> Answer {
    let profile = ProfileBuilder::cpu().time(Nanos(now_nanos()));
    let mut profile = profile;
    profile.sample(&["main", "pushed"], &[1, 10_000_000], &[]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(profile.gzip());
    let body = format!(
        r#"{{"series":[{{"labels":[{{"name":"__name__","value":"process_cpu"}},{{"name":"service_name","value":"pusher"}}],"samples":[{{"rawProfile":"{b64}","ID":"x"}}]}}]}}"#
    );
    let mut all: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| *k != "Content-Type")
        .copied()
        .collect();
    all.push(("Content-Type", "application/json"));
    call(
        "POST",
        &format!("{}/push.v1.PusherService/Push", server.url),
        &all,
        Some(body.as_bytes()),
    )
}

fn with_token<T>(token: Option<&str>, mut r: tonic::Request<T>) -> tonic::Request<T> {
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", bearer(t).parse().expect("ascii"));
    }
    r
}

/// Flight `DoGet` for alpha's rows and a cluster RPC, each with the given credentials: all
/// refused as unauthenticated.
fn internal_surfaces_refuse(server: &Server, tokens: &[Option<&str>]) {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use firn_node::cluster::rpc::pb;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for token in tokens {
            let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
                .expect("endpoint")
                .connect()
                .await
                .expect("connect");
            let ticket = json!({
                "shard": 0, "applied": 0, "tenant": "alpha",
                "fragment": {"Columns": null}
            });
            let mut flight = FlightServiceClient::new(channel.clone());
            // A streaming call's refusal arrives with the stream's first message.
            let status = match flight
                .do_get(with_token(
                    *token,
                    tonic::Request::new(arrow_flight::Ticket {
                        ticket: ticket.to_string().into_bytes().into(),
                    }),
                ))
                .await
            {
                Err(status) => status,
                Ok(stream) => stream.into_inner().message().await.expect_err("refused"),
            };
            assert_eq!(
                status.code(),
                tonic::Code::Unauthenticated,
                "{token:?}: {status}"
            );
            let mut cluster = pb::cluster_client::ClusterClient::new(channel);
            let status = cluster
                .read_index(with_token(
                    *token,
                    tonic::Request::new(pb::ReadIndexRequest {
                        shard: 0,
                        meta: true,
                    }),
                ))
                .await
                .expect_err("refused");
            assert_eq!(
                status.code(),
                tonic::Code::Unauthenticated,
                "{token:?}: {status}"
            );
        }
    });
}
