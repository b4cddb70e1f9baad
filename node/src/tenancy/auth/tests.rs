//! The caller of a request from its credentials, and what each caller may reach.

use super::*;
use crate::tenancy::registry::{TenancyCommand, TokenInfo};

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_str(v).expect("ascii"));
    }
    h
}

fn state_with(token: &str, role: Role) -> MetaState {
    let mut meta = MetaState::default();
    meta.tenancy
        .apply(&TenancyCommand::CreateTenant {
            id: "acme".into(),
            name: String::new(),
            at: 1,
        })
        .expect("tenant");
    meta.tenancy
        .apply(&TenancyCommand::CreateToken {
            id: "t1".into(),
            token: TokenInfo {
                tenant: "acme".into(),
                role,
                name: String::new(),
                hash: hash_token(token),
                created_at: 1,
                revoked_at: None,
            },
        })
        .expect("token");
    meta
}

#[test]
fn surfaces_of_paths() {
    assert_eq!(Surface::of("/ingest"), Surface::Write);
    assert_eq!(Surface::of("/push.v1.PusherService/Push"), Surface::Write);
    assert_eq!(Surface::of("/api/v1/labels/pod/values"), Surface::Read);
    assert_eq!(Surface::of("/api/v1/labelsx"), Surface::Operator);
    assert_eq!(Surface::of("/pyroscope/render-diff"), Surface::Read);
    assert_eq!(Surface::of("/pyroscope/ingest"), Surface::Write);
    assert_eq!(Surface::of("/api/v1/admin/tenants"), Surface::Admin);
    assert_eq!(Surface::of("/metrics"), Surface::Operator);
    assert_eq!(Surface::of("/api/v1/cluster"), Surface::Operator);
    assert_eq!(
        Surface::of("/arrow.flight.protocol.FlightService/DoGet"),
        Surface::Internal
    );
    assert_eq!(Surface::of("/healthz"), Surface::Open);
}

#[test]
fn tokens_bearer_and_basic() {
    let auth = Authenticator::new(AuthMode::Token, Some("root")).expect("auth");
    let meta = state_with("secret", Role::Write);
    let bearer = headers(&[("authorization", "Bearer secret")]);
    let caller = auth.caller(Surface::Write, &bearer, &meta).expect("valid");
    assert!(matches!(&caller, Caller::Tenant { tenant, .. } if tenant.as_str() == "acme"));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("123456:secret")
    );
    let basic = headers(&[("authorization", basic.as_str())]);
    assert_eq!(
        auth.caller(Surface::Write, &basic, &meta).expect("basic"),
        caller
    );
    let root = headers(&[("authorization", "Bearer root")]);
    assert_eq!(
        auth.caller(Surface::Read, &root, &meta).expect("admin"),
        Caller::Operator
    );
    for bad in [
        headers(&[]),
        headers(&[("authorization", "Bearer nope")]),
        headers(&[("authorization", "Digest x")]),
    ] {
        let err = auth
            .caller(Surface::Read, &bad, &meta)
            .expect_err("refused");
        assert!(matches!(err, Error::Unauthenticated(_)), "{err}");
    }
    assert!(
        auth.caller(Surface::Internal, &bearer, &meta).is_err(),
        "a tenant token is not the nodes' credential"
    );
    let mut internal = HeaderMap::new();
    internal.insert(
        "authorization",
        auth.internal_credential().expect("credential"),
    );
    assert_eq!(
        auth.caller(Surface::Internal, &internal, &meta)
            .expect("node"),
        Caller::Internal
    );
}

#[test]
fn revocation_is_seen_at_the_next_version() {
    let auth = Authenticator::new(AuthMode::Token, Some("root")).expect("auth");
    let mut meta = state_with("secret", Role::Read);
    let h = headers(&[("authorization", "Bearer secret")]);
    auth.caller(Surface::Read, &h, &meta).expect("valid");
    meta.tenancy
        .apply(&TenancyCommand::RevokeToken {
            id: "t1".into(),
            at: 2,
        })
        .expect("revoke");
    let err = auth.caller(Surface::Read, &h, &meta).expect_err("revoked");
    assert!(err.to_string().contains("revoked"), "{err}");
}

#[test]
fn roles_and_tenants_are_enforced() {
    let caller = Caller::Tenant {
        tenant: TenantId::new("acme".to_owned()).expect("id"),
        role: Role::Read,
        token: "t1".into(),
    };
    let mut h = headers(&[]);
    admit(&caller, Surface::Read, &mut h).expect("read");
    assert_eq!(h.get("x-scope-orgid").expect("bound"), "acme");
    let mut h = headers(&[]);
    assert!(matches!(
        admit(&caller, Surface::Write, &mut h),
        Err(Error::PermissionDenied(_))
    ));
    let mut forged = headers(&[("x-scope-orgid", "other")]);
    assert!(matches!(
        admit(&caller, Surface::Read, &mut forged),
        Err(Error::PermissionDenied(_))
    ));
    let mut same = headers(&[("x-scope-orgid", "acme")]);
    admit(&caller, Surface::Read, &mut same).expect("same tenant");
    assert!(admit(&caller, Surface::Operator, &mut headers(&[])).is_err());
    assert!(admit(&caller, Surface::Internal, &mut headers(&[])).is_err());
    assert!(Authenticator::new(AuthMode::Token, None).is_err());
}
