//! Who is asking: the caller of every request, from its credentials, decided before any
//! handler runs. With `--auth=none` anyone may do anything as the tenant `X-Scope-OrgID` names
//! (Pyroscope's default). With `--auth=token` a request carries a token, as
//! `Authorization: Bearer <token>` or as the password of Basic auth (what Pyroscope SDKs and
//! Grafana send); the token's tenant replaces whatever `X-Scope-OrgID` would have said.
//!
//! ```text
//!  path ─► surface: open | write | read | admin | operator | internal
//!  credentials ─► bootstrap admin token  ─► Caller::Operator (any tenant, every surface)
//!              ─► a tenant's token       ─► Caller::Tenant { tenant, role }
//!              ─► the nodes' credential  ─► Caller::Internal (node-to-node gRPC and Flight)
//!  surface × caller ─► 401 (no or bad token) | 403 (wrong role or tenant) | the handler, with
//!                      X-Scope-OrgID set to the caller's tenant
//! ```

use std::collections::HashMap;
use std::sync::RwLock;

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use firn_storage::TenantId;

use crate::cluster::meta::MetaState;
use crate::error::{Error, Result};
use crate::tenancy::registry::Role;

/// How requests are authenticated.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `X-Scope-OrgID` is trusted; nothing is checked (the laptop default).
    #[default]
    None,
    /// Every request but the probes carries a token.
    Token,
}

/// The caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// `--auth=none`: anyone.
    Open,
    /// The bootstrap admin token: the operator of the cluster.
    Operator,
    /// A tenant's token.
    Tenant {
        tenant: TenantId,
        role: Role,
        token: String,
    },
    /// Another node of the cluster.
    Internal,
}

impl Caller {
    /// May manage `tenant` (its tokens; see its limits and usage).
    pub fn manages(&self, tenant: &str) -> bool {
        match self {
            Caller::Open | Caller::Operator => true,
            Caller::Tenant {
                tenant: t, role, ..
            } => *role == Role::Admin && t.as_str() == tenant,
            Caller::Internal => false,
        }
    }

    /// May change anything: tenants, limits, every tenant's tokens.
    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::Open | Caller::Operator)
    }
}

/// What a path serves, for deciding who may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Probes: no credentials.
    Open,
    /// Ingest: a write or admin token of the tenant.
    Write,
    /// Queries: a read or admin token of the tenant.
    Read,
    /// The admin API: every handler checks the caller itself.
    Admin,
    /// Cluster status and membership, `/metrics`: the operator only.
    Operator,
    /// Node-to-node gRPC and Flight: the nodes' credential only.
    Internal,
}

impl Surface {
    pub fn of(path: &str) -> Self {
        const WRITE: [&str; 7] = [
            "/push.v1.PusherService/",
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/",
            "/v1development/profiles",
            "/parca.profilestore.v1alpha1.ProfileStoreService/",
            "/profiles/writeraw",
            "/ingest",
            "/pyroscope/ingest",
        ];
        const READ: [&str; 12] = [
            "/querier.v1.QuerierService/",
            "/parca.query.v1alpha1.QueryService/",
            "/pyroscope/render",
            "/pyroscope/render-diff",
            "/pyroscope/labels",
            "/pyroscope/label-values",
            "/api/v1/merge",
            "/api/v1/series",
            "/api/v1/labels",
            "/api/v1/profile-types",
            "/api/v1/diff",
            "/api/v1/sql",
        ];
        // The probes, and the web UI's page and assets (no data: the page asks the API for
        // everything with the caller's token).
        if path == "/ready" || path == "/healthz" || path == "/" || path.starts_with("/ui/") {
            Surface::Open
        } else if path.starts_with("/firn.cluster.v1.") || path.starts_with("/arrow.flight.") {
            Surface::Internal
        } else if WRITE.iter().any(|p| path_is(path, p)) {
            Surface::Write
        } else if READ.iter().any(|p| path_is(path, p)) {
            Surface::Read
        } else if path_is(path, "/api/v1/admin") {
            Surface::Admin
        } else {
            // The cluster API, /metrics, and anything not listed.
            Surface::Operator
        }
    }

    /// Served over gRPC-shaped protocols, so a refusal takes their shape.
    pub fn is_rpc(path: &str) -> bool {
        path.starts_with("/push.")
            || path.starts_with("/parca.")
            || path.starts_with("/querier.")
            || path.starts_with("/opentelemetry.")
            || path.starts_with("/firn.cluster.")
            || path.starts_with("/arrow.flight.")
    }
}

/// `path` is `prefix` or below it (`/api/v1/labels` and `/api/v1/labels/x/values`, not
/// `/api/v1/labelsx`); a prefix ending in `/` matches anything below.
fn path_is(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token: `firn_` and 256 random bits, base64url.
pub fn new_token() -> Result<String> {
    let bytes = random::<32>()?;
    Ok(format!(
        "firn_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// A new token id: 64 random bits, hex.
pub fn new_token_id() -> Result<String> {
    Ok(hex(&random::<8>()?))
}

fn random<const N: usize>() -> Result<[u8; N]> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("the system's random source failed".into()))?;
    Ok(bytes)
}

/// Byte-wise equality in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token a request presents, if any: a Bearer token, or the password of Basic auth.
pub fn presented(headers: &HeaderMap) -> Result<Option<String>> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::Unauthenticated("the Authorization header is not ASCII".into()))?
        .trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| {
                Error::Unauthenticated(
                    "Basic credentials are not valid base64 of user:password".into(),
                )
            })?;
        let password = decoded.split_once(':').map_or("", |(_, p)| p);
        return Ok(Some(password.to_owned()));
    }
    Err(Error::Unauthenticated(format!(
        "Authorization scheme {scheme:?} is not served; send Bearer <token>, or Basic auth with \
         the token as the password"
    )))
}

/// A token as the index holds it.
#[derive(Clone, Debug)]
struct Known {
    id: String,
    tenant: String,
    role: Role,
    revoked: bool,
}

#[derive(Debug, Default)]
struct Index {
    /// The registry version the index was built from.
    version: Option<u64>,
    by_hash: HashMap<String, Known>,
}

/// The credentials a node checks: the bootstrap admin token, the nodes' credential, and the
/// tenants' tokens (an index over the meta state, rebuilt when it changes).
#[derive(Debug)]
pub struct Authenticator {
    pub mode: AuthMode,
    admin_hash: Option<String>,
    /// `Bearer <credential>` as nodes send it to each other.
    internal: Option<String>,
    index: RwLock<Index>,
}

impl Authenticator {
    /// With `--auth=token` an admin token is required: the operator's, from which the nodes'
    /// credential is derived (every node of a cluster is given the same one).
    pub fn new(mode: AuthMode, admin_token: Option<&str>) -> Result<Self> {
        let (admin_hash, internal) = match (mode, admin_token) {
            (AuthMode::Token, None) => {
                return Err(Error::BadRequest(
                    "--auth=token needs an admin token: --admin-token-file or FIRN_ADMIN_TOKEN"
                        .into(),
                ));
            }
            (_, Some(t)) => (
                Some(hash_token(t)),
                Some(format!(
                    "Bearer {}",
                    hash_token(&format!("firn internal v1\n{t}"))
                )),
            ),
            (AuthMode::None, None) => (None, None),
        };
        Ok(Self {
            mode,
            admin_hash,
            internal: (mode == AuthMode::Token).then_some(internal).flatten(),
            index: RwLock::new(Index::default()),
        })
    }

    /// The `authorization` value this node sends to other nodes, if any.
    pub fn internal_credential(&self) -> Option<HeaderValue> {
        self.internal
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
    }

    /// The caller of a request to `surface`.
    pub fn caller(
        &self,
        surface: Surface,
        headers: &HeaderMap,
        meta: &MetaState,
    ) -> Result<Caller> {
        if self.mode == AuthMode::None || surface == Surface::Open {
            return Ok(Caller::Open);
        }
        if surface == Surface::Internal {
            let sent = headers
                .get(axum::http::header::AUTHORIZATION)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            let expected = self.internal.as_deref().unwrap_or_default().as_bytes();
            return if !expected.is_empty() && same(sent, expected) {
                Ok(Caller::Internal)
            } else {
                Err(Error::Unauthenticated(
                    "node-to-node calls need the cluster's credential (every node must be \
                     started with the same admin token)"
                        .into(),
                ))
            };
        }
        let token = presented(headers)?.ok_or_else(|| {
            Error::Unauthenticated(
                "this server needs a token: send Authorization: Bearer <token>, or Basic auth \
                 with the token as the password"
                    .into(),
            )
        })?;
        let hash = hash_token(&token);
        if self
            .admin_hash
            .as_deref()
            .is_some_and(|h| same(h.as_bytes(), hash.as_bytes()))
        {
            return Ok(Caller::Operator);
        }
        let known = self.lookup(&hash, meta).ok_or_else(|| {
            Error::Unauthenticated("the token is not valid for this cluster".into())
        })?;
        if known.revoked {
            return Err(Error::Unauthenticated(format!(
                "token {} is revoked (or its tenant is)",
                known.id
            )));
        }
        Ok(Caller::Tenant {
            tenant: TenantId::new(known.tenant)?,
            role: known.role,
            token: known.id,
        })
    }

    fn lookup(&self, hash: &str, meta: &MetaState) -> Option<Known> {
        {
            let index = self.index.read().expect("token index lock poisoned");
            if index.version == Some(meta.tenancy.version) {
                return index.by_hash.get(hash).cloned();
            }
        }
        let mut index = self.index.write().expect("token index lock poisoned");
        if index.version != Some(meta.tenancy.version) {
            let registry = &meta.tenancy;
            index.by_hash = registry
                .tokens
                .iter()
                .map(|(id, t)| {
                    let tenant_revoked = registry
                        .tenants
                        .get(&t.tenant)
                        .is_none_or(|tenant| tenant.revoked_at.is_some());
                    (
                        t.hash.clone(),
                        Known {
                            id: id.clone(),
                            tenant: t.tenant.clone(),
                            role: t.role,
                            revoked: t.revoked_at.is_some() || tenant_revoked,
                        },
                    )
                })
                .collect();
            index.version = Some(meta.tenancy.version);
        }
        index.by_hash.get(hash).cloned()
    }
}

/// Checks that `caller` may use `surface` and makes the request's tenant the caller's: a
/// tenant token's tenant replaces an absent `X-Scope-OrgID`, and any other is refused.
pub fn admit(caller: &Caller, surface: Surface, headers: &mut HeaderMap) -> Result<()> {
    match (surface, caller) {
        (Surface::Open, _) | (_, Caller::Open) => Ok(()),
        (Surface::Internal, Caller::Internal) => Ok(()),
        (Surface::Internal, _) => Err(Error::PermissionDenied(
            "node-to-node calls are for the cluster's nodes".into(),
        )),
        (Surface::Admin, Caller::Tenant { .. } | Caller::Operator) => Ok(()),
        (_, Caller::Operator) => Ok(()),
        (Surface::Operator, _) => Err(Error::PermissionDenied(
            "this API is for the cluster's operator (the admin token)".into(),
        )),
        (_, Caller::Internal) => Err(Error::PermissionDenied(
            "the nodes' credential serves node-to-node calls only".into(),
        )),
        (
            Surface::Write | Surface::Read,
            Caller::Tenant {
                tenant,
                role,
                token,
                ..
            },
        ) => {
            let allowed = if surface == Surface::Write {
                role.can_write()
            } else {
                role.can_read()
            };
            if !allowed {
                let needs = if surface == Surface::Write {
                    "writing needs a write or admin token"
                } else {
                    "reading needs a read or admin token"
                };
                return Err(Error::PermissionDenied(format!(
                    "token {token} has role {}; {needs}",
                    serde_json::to_value(role)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )));
            }
            bind_tenant(tenant, headers)
        }
    }
}

/// Sets `X-Scope-OrgID` to `tenant`, refusing a request that names another.
fn bind_tenant(tenant: &TenantId, headers: &mut HeaderMap) -> Result<()> {
    if let Some(named) = headers.get("x-scope-orgid") {
        if named.as_bytes() != tenant.as_str().as_bytes() {
            return Err(Error::PermissionDenied(format!(
                "the token belongs to tenant {:?}; X-Scope-OrgID {:?} names another",
                tenant.as_str(),
                String::from_utf8_lossy(named.as_bytes())
            )));
        }
        return Ok(());
    }
    let value = HeaderValue::from_str(tenant.as_str())
        .map_err(|_| Error::Internal("a tenant id is not a header value".into()))?;
    headers.insert("x-scope-orgid", value);
    Ok(())
}

#[cfg(test)]
mod tests;
