//! The admin API: tenants, tokens, limits and usage. Changes go through the meta group, so
//! every node agrees within a heartbeat; reads answer from this node's meta state.
//!
//! ```text
//!  GET    /api/v1/admin/tenants                   operator: every tenant
//!  POST   /api/v1/admin/tenants                   operator: {"id", "name"} creates one
//!  GET    /api/v1/admin/tenants/{id}              its admin: the tenant, its limits
//!  DELETE /api/v1/admin/tenants/{id}              operator: revokes it (and every token)
//!  GET    /api/v1/admin/tenants/{id}/tokens       its admin: tokens (never their secrets)
//!  POST   /api/v1/admin/tenants/{id}/tokens       its admin: {"role", "name"}; the token is
//!                                                 in this answer only
//!  DELETE /api/v1/admin/tokens/{token}            its tenant's admin: revokes it
//!  GET    /api/v1/admin/limits                    operator: the cluster's defaults
//!  PUT    /api/v1/admin/limits                    operator: patch them (null removes)
//!  GET    /api/v1/admin/tenants/{id}/limits       its admin: limits in force, overrides
//!  PUT    /api/v1/admin/tenants/{id}/limits       operator: patch the overrides
//!  GET    /api/v1/admin/usage?from&to[&tenant]    operator (a tenant admin: its own)
//! ```
//!
//! "Operator" is the bootstrap admin token (anyone with `--auth=none`); a tenant's admin is a
//! token of that tenant with the `admin` role.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::cluster::meta::MetaCommand;
use crate::error::{Error, Result};
use crate::tenancy::auth::{self, Caller};
use crate::tenancy::limits::Limits;
use crate::tenancy::registry::{Role, TenancyCommand, TokenInfo};
use crate::time::parse_time;

fn unix_secs(state: &AppState) -> i64 {
    state.cluster.tenancy.now().0 / 1_000_000_000
}

fn operator_only(caller: &Caller) -> Result<()> {
    if caller.is_operator() {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            "this takes the cluster operator's admin token".into(),
        ))
    }
}

fn manager_of(caller: &Caller, tenant: &str) -> Result<()> {
    if caller.manages(tenant) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "this takes an admin token of tenant {tenant:?} or the operator's"
        )))
    }
}

/// Commits a change through the meta group and waits until this node has applied it, so the
/// answer (read from this node's state) shows it.
async fn propose(state: &AppState, command: TenancyCommand) -> Result<()> {
    state
        .cluster
        .propose_meta(MetaCommand::Tenancy(command))
        .await?;
    state.cluster.sync_meta().await
}

fn tenant_json(state: &AppState, id: &str) -> Result<Value> {
    let meta = state.cluster.state();
    let registry = &meta.tenancy;
    let tenant = registry
        .tenants
        .get(id)
        .ok_or_else(|| Error::NotFound(format!("tenant {id:?} does not exist")))?;
    let tokens = registry.tokens.values().filter(|t| t.tenant == id).count();
    Ok(json!({
        "id": id,
        "name": tenant.name,
        "created_at": tenant.created_at,
        "revoked_at": tenant.revoked_at,
        "tokens": tokens,
        "limits": registry.limits(id),
        "overrides": tenant.limits,
    }))
}

pub async fn list_tenants(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    operator_only(&caller)?;
    let meta = state.cluster.state();
    let ids: Vec<&String> = meta.tenancy.tenants.keys().collect();
    let tenants = ids
        .into_iter()
        .map(|id| tenant_json(&state, id))
        .collect::<Result<Vec<_>>>()?;
    Ok(Json(json!({ "tenants": tenants })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    id: String,
    #[serde(default)]
    name: String,
}

pub async fn create_tenant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    operator_only(&caller)?;
    let new: NewTenant = json_body(&body)?;
    firn_storage::TenantId::new(new.id.clone())?;
    if new.name.len() > 256 {
        return Err(Error::BadRequest(format!(
            "name is {} bytes, the limit is 256",
            new.name.len()
        )));
    }
    if state.cluster.state().tenancy.tenants.contains_key(&new.id) {
        return Err(Error::Refused(format!(
            "tenant {:?} already exists",
            new.id
        )));
    }
    propose(
        &state,
        TenancyCommand::CreateTenant {
            id: new.id.clone(),
            name: new.name,
            at: unix_secs(&state),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(tenant_json(&state, &new.id)?)))
}

pub async fn get_tenant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    manager_of(&caller, &id)?;
    Ok(Json(tenant_json(&state, &id)?))
}

pub async fn revoke_tenant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    operator_only(&caller)?;
    tenant_json(&state, &id)?;
    propose(
        &state,
        TenancyCommand::RevokeTenant {
            id: id.clone(),
            at: unix_secs(&state),
        },
    )
    .await?;
    Ok(Json(tenant_json(&state, &id)?))
}

fn token_json(id: &str, t: &TokenInfo) -> Value {
    json!({
        "id": id,
        "tenant": t.tenant,
        "role": t.role,
        "name": t.name,
        "created_at": t.created_at,
        "revoked_at": t.revoked_at,
    })
}

pub async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    manager_of(&caller, &id)?;
    tenant_json(&state, &id)?;
    let meta = state.cluster.state();
    let tokens: Vec<Value> = meta
        .tenancy
        .tokens
        .iter()
        .filter(|(_, t)| t.tenant == id)
        .map(|(token, t)| token_json(token, t))
        .collect();
    Ok(Json(json!({ "tokens": tokens })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    role: Role,
    #[serde(default)]
    name: String,
}

pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    manager_of(&caller, &id)?;
    let new: NewToken = json_body(&body)?;
    if new.name.len() > 256 {
        return Err(Error::BadRequest(format!(
            "name is {} bytes, the limit is 256",
            new.name.len()
        )));
    }
    tenant_json(&state, &id)?;
    let secret = auth::new_token()?;
    let token_id = auth::new_token_id()?;
    let info = TokenInfo {
        tenant: id,
        role: new.role,
        name: new.name,
        hash: auth::hash_token(&secret),
        created_at: unix_secs(&state),
        revoked_at: None,
    };
    propose(
        &state,
        TenancyCommand::CreateToken {
            id: token_id.clone(),
            token: info.clone(),
        },
    )
    .await?;
    let mut answer = token_json(&token_id, &info);
    answer["token"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(answer)))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(token): Path<String>,
) -> Result<Json<Value>> {
    let meta = state.cluster.state();
    let info = meta
        .tenancy
        .tokens
        .get(&token)
        .ok_or_else(|| Error::NotFound(format!("token {token:?} does not exist")))?;
    manager_of(&caller, &info.tenant)?;
    propose(
        &state,
        TenancyCommand::RevokeToken {
            id: token.clone(),
            at: unix_secs(&state),
        },
    )
    .await?;
    let meta = state.cluster.state();
    let info = meta
        .tenancy
        .tokens
        .get(&token)
        .ok_or_else(|| Error::Internal("a revoked token vanished".into()))?;
    Ok(Json(token_json(&token, info)))
}

pub async fn get_defaults(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>> {
    operator_only(&caller)?;
    let meta = state.cluster.state();
    let overrides = &meta.tenancy.default_limits;
    Ok(Json(json!({
        "limits": Limits::resolve(overrides, None),
        "overrides": overrides,
        "built_in": Limits::default(),
    })))
}

pub async fn put_defaults(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>> {
    operator_only(&caller)?;
    let patch: Value = json_body(&body)?;
    let patched = state
        .cluster
        .state()
        .tenancy
        .default_limits
        .patched(&patch)
        .map_err(Error::BadRequest)?;
    propose(
        &state,
        TenancyCommand::SetLimits {
            tenant: None,
            limits: patched,
        },
    )
    .await?;
    get_defaults(State(state), Extension(caller)).await
}

pub async fn get_limits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    manager_of(&caller, &id)?;
    firn_storage::TenantId::new(id.clone())?;
    let meta = state.cluster.state();
    Ok(Json(json!({
        "tenant": id,
        "limits": meta.tenancy.limits(&id),
        "overrides": meta.tenancy.overrides(&id).cloned().unwrap_or_default(),
    })))
}

pub async fn put_limits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>> {
    operator_only(&caller)?;
    firn_storage::TenantId::new(id.clone())?;
    let patch: Value = json_body(&body)?;
    let patched = state
        .cluster
        .state()
        .tenancy
        .overrides(&id)
        .cloned()
        .unwrap_or_default()
        .patched(&patch)
        .map_err(Error::BadRequest)?;
    propose(
        &state,
        TenancyCommand::SetLimits {
            tenant: Some(id.clone()),
            limits: patched,
        },
    )
    .await?;
    get_limits(State(state), Extension(caller), Path(id)).await
}

#[derive(Debug, Default, Deserialize)]
pub struct UsageParams {
    from: Option<String>,
    to: Option<String>,
    tenant: Option<String>,
}

/// Usage totals by tenant over `[from, to)` (default: the last 24 hours), every node's.
pub async fn usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<UsageParams>,
) -> Result<Json<Value>> {
    let tenant = match (&caller, params.tenant) {
        (Caller::Tenant { tenant, .. }, None) => Some(tenant.as_str().to_owned()),
        (_, t) => t,
    };
    match &tenant {
        Some(t) => manager_of(&caller, t)?,
        None => operator_only(&caller)?,
    }
    let now = state.cluster.tenancy.now();
    let time = |text: &Option<String>, default, field: &str| match text {
        Some(t) => parse_time(t, now).map_err(|e| Error::BadRequest(format!("{field}: {e}"))),
        None => Ok(default),
    };
    let from = time(
        &params.from,
        firn_storage::Nanos(now.0 - 86_400_000_000_000),
        "from",
    )?;
    let to = time(&params.to, now, "to")?;
    let _one = state
        .cluster
        .tenancy
        .usage_queries
        .try_acquire()
        .map_err(|_| {
            Error::NotReady("a usage query is already running on this node; retry shortly".into())
        })?;
    // This node's latest counts first; the others' are at most one flush interval old.
    crate::tenancy::metering::persist(&state.cluster).await?;
    let settings = &state.cluster.shard_settings;
    let totals = crate::tenancy::usage::range(
        settings.object_store.as_ref(),
        &settings.prefix,
        from,
        to,
        tenant.as_deref(),
    )
    .await?;
    Ok(Json(json!({
        "from": from.0 / 1_000_000_000,
        "to": to.0 / 1_000_000_000,
        "tenants": totals,
    })))
}

/// A JSON body, its errors naming the field.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        Error::BadRequest(format!("request body, at {path}: {}", e.into_inner()))
    })
}
