//! The claims parser: arbitrary bytes into `TokenPayload` with `serde_json`.
//!
//! Invariants: no panic; an accepted payload is a JSON object whose registered
//! claims have the documented types (checked against `serde_json::Value`, an
//! independent parse), never carries a registered name in `extra`, and round-trips:
//! serializing and parsing again gives the same claims, and serializing is stable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower_jwt_auth::{TokenPayload, TokenType};

const REGISTERED: [&str; 13] = [
    "sub",
    "jti",
    "type",
    "fresh",
    "csrf",
    "iat",
    "nbf",
    "exp",
    "iss",
    "aud",
    "scopes",
    "fam",
    "auth_time",
];

fn numeric_date(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    if let Some(u) = v.as_u64() {
        return Some(u);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then(|| f.round() as u64)
}

fuzz_target!(|data: &[u8]| {
    let Ok(claims) = serde_json::from_slice::<TokenPayload>(data) else {
        return;
    };
    // The reference: the same bytes as a plain JSON value.
    let value: Value = serde_json::from_slice(data).expect("accepted claims are JSON");
    let obj = value.as_object().expect("accepted claims are an object");
    assert_eq!(obj.get("sub").and_then(Value::as_str), Some(&*claims.sub));
    assert_eq!(obj.get("jti").and_then(Value::as_str), Some(&*claims.jti));
    assert!(!claims.jti.is_empty(), "empty jti accepted");
    assert!(claims.family.as_deref() != Some(""), "empty fam accepted");
    let ty = match claims.token_type {
        TokenType::Access => "access",
        TokenType::Refresh => "refresh",
        _ => unreachable!("only two types"),
    };
    assert_eq!(obj.get("type").and_then(Value::as_str), Some(ty));
    assert_eq!(numeric_date(obj.get("exp")), Some(claims.exp), "exp");
    assert_eq!(numeric_date(obj.get("iat")), Some(claims.iat), "iat");
    assert_eq!(numeric_date(obj.get("nbf")), claims.nbf, "nbf");
    assert_eq!(
        numeric_date(obj.get("auth_time")),
        claims.auth_time,
        "auth_time"
    );
    assert_eq!(
        obj.get("fresh").and_then(Value::as_bool).unwrap_or(false),
        claims.fresh
    );
    assert_eq!(
        obj.get("csrf").and_then(Value::as_str),
        claims.csrf.as_deref()
    );
    assert_eq!(
        obj.get("iss").and_then(Value::as_str),
        claims.iss.as_deref()
    );
    assert_eq!(
        obj.get("fam").and_then(Value::as_str),
        claims.family.as_deref()
    );
    let strings = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_owned)).collect(),
            _ => None,
        }
    };
    assert_eq!(obj.get("aud").and_then(strings), claims.aud, "aud");
    assert_eq!(
        obj.get("scopes")
            .and_then(|v| v.as_array().is_some().then(|| strings(v)).flatten()),
        claims.scopes,
        "scopes"
    );
    for name in REGISTERED {
        assert!(!claims.extra.contains_key(name), "{name} in extra");
    }
    assert_eq!(
        claims.extra.len() + REGISTERED.iter().filter(|n| obj.contains_key(**n)).count(),
        obj.len(),
        "every member is kept"
    );

    // Round trip.
    let json = serde_json::to_vec(&claims).expect("claims serialize");
    let again: TokenPayload = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "serialized claims do not parse ({e}): {}",
            String::from_utf8_lossy(&json)
        )
    });
    // Floats in custom claims may move by one ulp through serde_json's fast parser;
    // everything else must be identical.
    let mut a = claims.clone();
    let mut b = again.clone();
    a.extra.clear();
    b.extra.clear();
    assert_eq!(a, b, "round trip changed the registered claims");
    assert_eq!(
        claims.extra.keys().collect::<Vec<_>>(),
        again.extra.keys().collect::<Vec<_>>()
    );
    let json2 = serde_json::to_vec(&again).expect("claims serialize");
    let third: TokenPayload = serde_json::from_slice(&json2).expect("parses again");
    assert_eq!(again.extra.len(), third.extra.len());
    let mut c = third;
    c.extra.clear();
    assert_eq!(b, c, "serializing is not stable");
});
