//! What the meta group records about tenants: each tenant, its tokens (hashed), and the
//! limits of every layer. A pure state machine like the rest of the meta state: commands carry
//! their own times and ids, so every replica applies them alike.
//!
//! ```text
//!  CreateTenant / RevokeTenant        tenants (a revoked tenant's tokens all stop working)
//!  CreateToken / RevokeToken          tokens: SHA-256 of the secret, tenant, role
//!  SetLimits { tenant: None | Some }  the cluster's default overrides, or one tenant's
//! ```

use std::collections::BTreeMap;

use firn_storage::TenantId;
use serde::{Deserialize, Serialize};

use crate::tenancy::limits::{LimitOverrides, Limits};

/// Tokens a tenant may hold; past it, a new token replaces the oldest revoked one (live
/// tokens are never dropped).
pub const MAX_TOKENS_PER_TENANT: usize = 100;
/// Tenants a cluster records at most.
pub const MAX_TENANTS: usize = 100_000;

/// What a token lets its holder do, within its tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Push profiles.
    Write,
    /// Query profiles, SQL included.
    Read,
    /// Write, read, and manage the tenant's own tokens; see its limits and usage.
    Admin,
}

impl Role {
    pub fn can_write(self) -> bool {
        matches!(self, Role::Write | Role::Admin)
    }

    pub fn can_read(self) -> bool {
        matches!(self, Role::Read | Role::Admin)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// A human name (the id is what requests carry).
    #[serde(default)]
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(default)]
    pub limits: LimitOverrides,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub tenant: String,
    pub role: Role,
    #[serde(default)]
    pub name: String,
    /// Hex SHA-256 of the token; the token itself is shown once, when it is created.
    pub hash: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// The meta group's record of tenants, tokens and limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantInfo>,
    /// By token id.
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenInfo>,
    /// The cluster's default overrides, under every tenant's own.
    #[serde(default)]
    pub default_limits: LimitOverrides,
    /// Overrides of tenants that are not created (with `--auth=none` any tenant writes).
    #[serde(default)]
    pub implicit_limits: BTreeMap<String, LimitOverrides>,
    /// Bumped by every change here (not by the rest of the meta state), so the token index
    /// is rebuilt only when tokens or tenants change.
    #[serde(default)]
    pub version: u64,
}

/// A change to the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenancyCommand {
    CreateTenant {
        id: String,
        name: String,
        at: i64,
    },
    RevokeTenant {
        id: String,
        at: i64,
    },
    CreateToken {
        id: String,
        token: TokenInfo,
    },
    RevokeToken {
        id: String,
        at: i64,
    },
    /// Replaces the overrides of a tenant, or the cluster's defaults when `tenant` is `None`.
    SetLimits {
        tenant: Option<String>,
        limits: LimitOverrides,
    },
}

impl Registry {
    /// Applies a command; an `Err` says why it was refused and changes nothing. A command
    /// applied again (a proposal retried after it committed) changes nothing and succeeds.
    pub fn apply(&mut self, command: &TenancyCommand) -> Result<(), String> {
        self.apply_once(command)?;
        self.version += 1;
        Ok(())
    }

    fn apply_once(&mut self, command: &TenancyCommand) -> Result<(), String> {
        match command {
            TenancyCommand::CreateTenant { id, name, at } => {
                TenantId::new(id.clone()).map_err(|e| e.to_string())?;
                if let Some(t) = self.tenants.get(id) {
                    if t.name == *name && t.created_at == *at {
                        return Ok(());
                    }
                    return Err(format!("tenant {id:?} already exists"));
                }
                if self.tenants.len() >= MAX_TENANTS {
                    return Err(format!("the cluster already has {MAX_TENANTS} tenants"));
                }
                let limits = self.implicit_limits.remove(id).unwrap_or_default();
                self.tenants.insert(
                    id.clone(),
                    TenantInfo {
                        name: name.clone(),
                        created_at: *at,
                        revoked_at: None,
                        limits,
                    },
                );
            }
            TenancyCommand::RevokeTenant { id, at } => {
                let tenant = self
                    .tenants
                    .get_mut(id)
                    .ok_or_else(|| format!("tenant {id:?} does not exist"))?;
                tenant.revoked_at.get_or_insert(*at);
            }
            TenancyCommand::CreateToken { id, token } => {
                let tenant = self
                    .tenants
                    .get(&token.tenant)
                    .ok_or_else(|| format!("tenant {:?} does not exist", token.tenant))?;
                if tenant.revoked_at.is_some() {
                    return Err(format!("tenant {:?} is revoked", token.tenant));
                }
                match self.tokens.get(id) {
                    Some(t) if t == token => return Ok(()),
                    Some(_) => return Err(format!("token id {id} is taken")),
                    None => {}
                }
                let held: Vec<(&String, &TokenInfo)> = self
                    .tokens
                    .iter()
                    .filter(|(_, t)| t.tenant == token.tenant)
                    .collect();
                if held.len() >= MAX_TOKENS_PER_TENANT {
                    let oldest_revoked = held
                        .iter()
                        .filter(|(_, t)| t.revoked_at.is_some())
                        .min_by_key(|(id, t)| (t.created_at, (*id).clone()))
                        .map(|(id, _)| (*id).clone());
                    match oldest_revoked {
                        Some(old) => {
                            self.tokens.remove(&old);
                        }
                        None => {
                            return Err(format!(
                                "tenant {:?} has {} live tokens, the limit is \
                                 {MAX_TOKENS_PER_TENANT}; revoke one first",
                                token.tenant,
                                held.len()
                            ));
                        }
                    }
                }
                self.tokens.insert(id.clone(), token.clone());
            }
            TenancyCommand::RevokeToken { id, at } => {
                let token = self
                    .tokens
                    .get_mut(id)
                    .ok_or_else(|| format!("token {id} does not exist"))?;
                token.revoked_at.get_or_insert(*at);
            }
            TenancyCommand::SetLimits { tenant, limits } => {
                limits.validate()?;
                match tenant {
                    None => self.default_limits = limits.clone(),
                    Some(id) => {
                        TenantId::new(id.clone()).map_err(|e| e.to_string())?;
                        if let Some(t) = self.tenants.get_mut(id) {
                            t.limits = limits.clone();
                        } else if *limits == LimitOverrides::default() {
                            self.implicit_limits.remove(id);
                        } else if self.implicit_limits.len() >= MAX_TENANTS {
                            return Err(format!(
                                "limits are set for {MAX_TENANTS} tenants already"
                            ));
                        } else {
                            self.implicit_limits.insert(id.clone(), limits.clone());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A tenant's own overrides, created or not.
    pub fn overrides(&self, tenant: &str) -> Option<&LimitOverrides> {
        self.tenants
            .get(tenant)
            .map(|t| &t.limits)
            .or_else(|| self.implicit_limits.get(tenant))
    }

    /// The limits in force for `tenant`.
    pub fn limits(&self, tenant: &str) -> Limits {
        Limits::resolve(&self.default_limits, self.overrides(tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(tenant: &str, hash: &str) -> TokenInfo {
        TokenInfo {
            tenant: tenant.into(),
            role: Role::Read,
            name: String::new(),
            hash: hash.into(),
            created_at: 1,
            revoked_at: None,
        }
    }

    #[test]
    fn tokens_belong_to_live_tenants() {
        let mut r = Registry::default();
        let create = |id: &str| TenancyCommand::CreateTenant {
            id: id.into(),
            name: String::new(),
            at: 1,
        };
        r.apply(&create("acme")).expect("create");
        r.apply(&create("acme"))
            .expect("the same command again (a retried proposal) is a no-op");
        let other = TenancyCommand::CreateTenant {
            id: "acme".into(),
            name: "another".into(),
            at: 2,
        };
        assert!(r.apply(&other).is_err(), "exists");
        assert!(r.apply(&create("a/b")).is_err(), "invalid id");
        let add = |id: &str, tenant: &str| TenancyCommand::CreateToken {
            id: id.into(),
            token: token(tenant, id),
        };
        r.apply(&add("t1", "acme")).expect("token");
        assert!(r.apply(&add("t2", "nobody")).is_err(), "no such tenant");
        r.apply(&TenancyCommand::RevokeTenant {
            id: "acme".into(),
            at: 5,
        })
        .expect("revoke");
        assert!(r.apply(&add("t3", "acme")).is_err(), "revoked tenant");
        r.apply(&TenancyCommand::RevokeToken {
            id: "t1".into(),
            at: 7,
        })
        .expect("revoke token");
        assert_eq!(r.tokens["t1"].revoked_at, Some(7));
    }

    #[test]
    fn a_full_tenant_replaces_its_oldest_revoked_token() {
        let mut r = Registry::default();
        r.apply(&TenancyCommand::CreateTenant {
            id: "acme".into(),
            name: String::new(),
            at: 1,
        })
        .expect("tenant");
        for i in 0..MAX_TOKENS_PER_TENANT {
            let mut t = token("acme", &format!("h{i}"));
            t.created_at = i as i64;
            r.apply(&TenancyCommand::CreateToken {
                id: format!("t{i}"),
                token: t,
            })
            .expect("token");
        }
        let one_more = |id: &str| TenancyCommand::CreateToken {
            id: id.into(),
            token: token("acme", id),
        };
        let err = r.apply(&one_more("x")).expect_err("full of live tokens");
        assert!(err.contains("revoke one first"), "{err}");
        for id in ["t7", "t3"] {
            r.apply(&TenancyCommand::RevokeToken {
                id: id.into(),
                at: 9,
            })
            .expect("revoke");
        }
        r.apply(&one_more("x"))
            .expect("replaces the oldest revoked");
        assert!(!r.tokens.contains_key("t3") && r.tokens.contains_key("t7"));
        assert_eq!(r.tokens.len(), MAX_TOKENS_PER_TENANT);
    }

    #[test]
    fn limits_layer_and_follow_a_tenant_into_creation() {
        let mut r = Registry::default();
        r.apply(&TenancyCommand::SetLimits {
            tenant: None,
            limits: LimitOverrides {
                max_active_series: Some(50),
                ..Default::default()
            },
        })
        .expect("defaults");
        r.apply(&TenancyCommand::SetLimits {
            tenant: Some("later".into()),
            limits: LimitOverrides {
                retention_secs: Some(60),
                ..Default::default()
            },
        })
        .expect("implicit");
        assert_eq!(r.limits("later").retention_secs, 60);
        assert_eq!(r.limits("later").max_active_series, 50);
        assert_eq!(r.limits("other").retention_secs, 0);
        r.apply(&TenancyCommand::CreateTenant {
            id: "later".into(),
            name: String::new(),
            at: 1,
        })
        .expect("create");
        assert_eq!(r.limits("later").retention_secs, 60, "kept on creation");
        assert!(r.implicit_limits.is_empty());
        let bad = TenancyCommand::SetLimits {
            tenant: None,
            limits: LimitOverrides {
                max_profile_bytes: Some(0),
                ..Default::default()
            },
        };
        assert!(r.apply(&bad).is_err());
    }
}
