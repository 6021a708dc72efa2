//! Turning a fetched JWK Set into verification keys, refusing everything that is
//! not a public signature key.
//!
//! `jsonwebtoken`'s `Jwk` parses the key material, but it is lenient on purpose
//! (private members are ignored, `oct` keys parse): the rules of RFC 7517/8725 are
//! checked here on the raw members first.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::fetch::FetchError;
use crate::keys::VerifyingKey;

/// Members that only a private or symmetric key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Parses a JWK Set document. The set is refused as a whole when it is not a JSON
/// object with a `keys` array, has more than `max_keys` entries, or holds no usable
/// key; single keys that are not public signature keys are skipped (providers list
/// encryption keys beside signing keys).
pub(crate) fn parse_set(body: &[u8], max_keys: usize) -> Result<Vec<VerifyingKey>, FetchError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|_| FetchError::Malformed)?;
    if set.keys.len() > max_keys {
        return Err(FetchError::TooManyKeys);
    }
    let mut out = Vec::new();
    for value in set.keys {
        if let Value::Object(members) = value {
            out.extend(verifying_keys(members));
        }
    }
    if out.is_empty() {
        return Err(FetchError::NoUsableKey);
    }
    Ok(out)
}

/// The verification keys of one JWK: one per algorithm it may verify (RSA keys
/// without `alg` verify RS* and PS*), or none when the JWK is not acceptable.
fn verifying_keys(members: Map<String, Value>) -> Vec<VerifyingKey> {
    let Some(algorithms) = acceptable(&members) else {
        return Vec::new();
    };
    let Ok(jwk) = serde_json::from_value::<Jwk>(Value::Object(members)) else {
        return Vec::new();
    };
    let Ok(key) = DecodingKey::from_jwk(&jwk) else {
        return Vec::new();
    };
    let kid = jwk.common.key_id;
    algorithms
        .into_iter()
        .filter_map(|alg| VerifyingKey::remote(kid.clone(), alg, key.clone()))
        .collect()
}

/// The algorithms a JWK may verify, or `None` when it must not be used at all.
fn acceptable(members: &Map<String, Value>) -> Option<Vec<Algorithm>> {
    if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
        return None;
    }
    match members.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return None,
    }
    match members.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|op| op.as_str() == Some("verify")) => {}
        Some(_) => return None,
    }
    let named = match members.get("alg") {
        None => None,
        // RFC 9864's fully specified name for EdDSA over Ed25519.
        Some(Value::String(a)) if a == "Ed25519" => Some(Algorithm::EdDSA),
        Some(Value::String(a)) => Some(a.parse::<Algorithm>().ok()?),
        Some(_) => return None,
    };
    let crv = members.get("crv").and_then(Value::as_str);
    // The algorithms the key type and curve allow: a JWK's `alg` must be one of them.
    let allowed: Vec<Algorithm> = match (members.get("kty").and_then(Value::as_str)?, crv) {
        ("RSA", _) => RSA_ALGORITHMS.to_vec(),
        ("EC", Some("P-256")) => vec![Algorithm::ES256],
        ("EC", Some("P-384")) => vec![Algorithm::ES384],
        ("OKP", Some("Ed25519")) => vec![Algorithm::EdDSA],
        _ => return None,
    };
    match named {
        Some(alg) if allowed.contains(&alg) => Some(vec![alg]),
        Some(_) => None,
        None => Some(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn algs(v: Value) -> Option<Vec<Algorithm>> {
        match v {
            Value::Object(m) => acceptable(&m),
            _ => None,
        }
    }

    const RSA: &str = "RSA";

    #[test]
    fn only_public_signature_keys() {
        assert_eq!(
            algs(json!({"kty": RSA, "n": "x", "e": "AQAB", "alg": "RS256"})),
            Some(vec![Algorithm::RS256])
        );
        assert_eq!(
            algs(json!({"kty": RSA, "n": "x", "e": "AQAB"})).map(|a| a.len()),
            Some(6),
            "RSA without alg: the RSA family only"
        );
        assert_eq!(algs(json!({"kty": RSA, "use": "enc"})), None);
        assert_eq!(algs(json!({"kty": RSA, "use": 1})), None);
        assert_eq!(algs(json!({"kty": RSA, "key_ops": ["encrypt"]})), None);
        assert!(algs(json!({"kty": RSA, "key_ops": ["verify"]})).is_some());
        assert_eq!(algs(json!({"kty": RSA, "d": "private"})), None);
        assert_eq!(algs(json!({"kty": "oct", "k": "c2VjcmV0"})), None);
        assert_eq!(algs(json!({"kty": "oct", "alg": "HS256"})), None);
        assert_eq!(
            algs(json!({"kty": RSA, "alg": "HS256"})),
            None,
            "alg must fit kty"
        );
        assert_eq!(algs(json!({"kty": RSA, "alg": "ES256"})), None);
        assert_eq!(algs(json!({"kty": RSA, "alg": "none"})), None);
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-256"})),
            Some(vec![Algorithm::ES256])
        );
        assert_eq!(
            algs(json!({"kty": "EC", "crv": "P-256", "alg": "ES384"})),
            None
        );
        assert_eq!(algs(json!({"kty": "EC", "crv": "P-521"})), None);
        assert_eq!(algs(json!({"kty": "EC", "crv": "Ed25519"})), None);
        assert_eq!(
            algs(json!({"kty": "OKP", "crv": "Ed25519", "alg": "Ed25519"})),
            Some(vec![Algorithm::EdDSA])
        );
        assert_eq!(algs(json!({"kty": "OKP", "crv": "X25519"})), None);
    }

    #[test]
    fn refuses_malformed_or_oversized_sets() {
        assert_eq!(parse_set(b"[]", 10).err(), Some(FetchError::Malformed));
        assert_eq!(parse_set(b"{}", 10).err(), Some(FetchError::Malformed));
        assert_eq!(
            parse_set(br#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#, 10).err(),
            Some(FetchError::NoUsableKey)
        );
        assert_eq!(
            parse_set(br#"{"keys":[1,2,3]}"#, 2).err(),
            Some(FetchError::TooManyKeys)
        );
    }

    /// The JWK Set of one RSA public key (PEM), with `alg`.
    fn rsa_set(public_pem: &[u8]) -> Vec<u8> {
        crate::keys::install_provider();
        let key = DecodingKey::from_rsa_pem(public_pem).unwrap();
        let jwk = Jwk::from_decoding_key(&key, Some(Algorithm::RS256)).unwrap();
        serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap()
    }

    #[test]
    fn rsa_keys_under_2048_bits_are_skipped() {
        let small = rsa_set(include_bytes!("../../tests/keys/rsa1024_public.pem"));
        assert_eq!(parse_set(&small, 10).err(), Some(FetchError::NoUsableKey));
        let usual = rsa_set(include_bytes!("../../tests/keys/rsa_public.pem"));
        assert_eq!(parse_set(&usual, 10).map(|keys| keys.len()), Ok(1));
    }
}
