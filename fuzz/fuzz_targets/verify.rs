//! `JwtAuth::verify` on arbitrary tokens, with an HS256 and an asymmetric key set.
//!
//! Input: one control byte, then either the token itself (raw mode), or a header and a
//! payload that the harness signs with a key it picks (signed mode: the fuzzer
//! controls every byte of the JSON while the signature is genuine, so header and
//! claims parsing is reached for real).
//!
//! Invariants: no panic; whatever `verify` accepts
//!
//! - has exactly three segments, a header that is a JSON object naming a configured
//!   algorithm, and a signature that an independent check recomputes with that key
//!   (`hmac` for HS256, `jsonwebtoken` for the asymmetric keys);
//! - in raw mode, was signed by us: its signing input is that of a real token
//!   (nothing the fuzzer can forge is accepted);
//! - in signed mode, was signed with the configured key (never the attacker's secret,
//!   never the RSA public key used as an HMAC secret, never an empty signature);
//! - has exactly the claims of its payload, of the expected type, not expired;
//!
//! and the asymmetric set gives the same answer with and without its verified-token
//! cache, twice in a row.

#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use libfuzzer_sys::fuzz_target;
use tower_jwt_auth::{JwtAuth, ManualClock, TokenPayload, TokenType};
use tower_jwt_auth_fuzz::*;

struct Setup {
    hs: JwtAuth,
    asym: JwtAuth,
    asym_uncached: JwtAuth,
    /// Signing inputs (`header.payload`) of the real tokens.
    inputs: Vec<String>,
    ed_key: EncodingKey,
    ed_public: DecodingKey,
    rsa_public: DecodingKey,
    ec_public: DecodingKey,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let clock = ManualClock::new(NOW + 60);
        let hs = hs_builder(&clock).build().expect("hs config");
        let asym = asym_builder(&clock).build().expect("asym config");
        let asym_uncached = asym_builder(&clock)
            .verified_token_cache(0)
            .build()
            .expect("asym config");
        // The real tokens the seeds carry (written by `examples/seeds.rs`).
        let inputs: Vec<String> = include_str!("../seeds/tokens.txt")
            .lines()
            .filter_map(|t| segments(t).map(|(h, p, _)| format!("{h}.{p}")))
            .collect();
        Setup {
            hs,
            asym,
            asym_uncached,
            inputs,
            ed_key: EncodingKey::from_ed_pem(ED_PRIVATE).expect("ed key"),
            ed_public: DecodingKey::from_ed_pem(ED_PUBLIC).expect("ed key"),
            rsa_public: DecodingKey::from_rsa_pem(RSA_PUBLIC).expect("rsa key"),
            ec_public: DecodingKey::from_ec_pem(EC_PUBLIC).expect("ec key"),
        }
    })
}

/// The reference's header: a JSON object (RFC 7515 §4: member names unique) whose
/// `alg` and `kid` are strings. Other members are skipped unparsed, as JSON allows
/// numbers beyond `f64` (RFC 8259 §6), which `serde_json::Value` refuses.
struct RefHeader {
    alg: Option<String>,
    kid: Option<String>,
    unsupported: bool,
}

impl<'de> serde::Deserialize<'de> for RefHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RefHeader;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<RefHeader, A::Error> {
                use serde::de::Error;
                let mut out = RefHeader {
                    alg: None,
                    kid: None,
                    unsupported: false,
                };
                let mut names = std::collections::HashSet::new();
                while let Some(name) = m.next_key::<String>()? {
                    if !names.insert(name.clone()) {
                        return Err(A::Error::custom("repeated member"));
                    }
                    match name.as_str() {
                        "alg" => out.alg = Some(m.next_value()?),
                        "kid" => out.kid = Some(m.next_value()?),
                        other => {
                            out.unsupported |= matches!(other, "crit" | "zip" | "enc");
                            m.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// The reference for an accepted token: its header, and a signature check that does
/// not go through the crate.
fn reference_accepts(s: &Setup, asym: bool, token: &str) -> Result<(), String> {
    let (h, p, sig) = segments(token).ok_or("not three segments")?;
    let header = URL_SAFE_NO_PAD.decode(h).map_err(|_| "header base64")?;
    let header: RefHeader =
        serde_json::from_slice(&header).map_err(|_| "header is not a JSON object")?;
    if header.unsupported {
        return Err("header has crit, zip or enc".into());
    }
    let alg = header.alg.as_deref().ok_or("no alg string")?;
    let kid = header.kid.as_deref();
    let message = format!("{h}.{p}");
    let ok = if !asym {
        match (alg, kid) {
            ("HS256", None) => hs256_recomputes(token, SECRET),
            ("HS384", Some(OLD_KID)) => {
                let key = DecodingKey::from_secret(OLD_SECRET);
                jsonwebtoken::crypto::verify(sig, message.as_bytes(), &key, Algorithm::HS384)
                    .unwrap_or(false)
            }
            _ => return Err(format!("alg {alg} kid {kid:?} selects no HS key")),
        }
    } else {
        let (key, alg) = match (alg, kid) {
            ("RS256", Some(RSA_KID)) => (&s.rsa_public, Algorithm::RS256),
            ("ES256", None) => (&s.ec_public, Algorithm::ES256),
            ("EdDSA", None | Some(ED_KID)) => (&s.ed_public, Algorithm::EdDSA),
            _ => return Err(format!("alg {alg} kid {kid:?} selects no asymmetric key")),
        };
        jsonwebtoken::crypto::verify(sig, message.as_bytes(), key, alg).unwrap_or(false)
    };
    if !ok {
        return Err("the signature does not recompute".into());
    }
    Ok(())
}

fn check_accepted(s: &Setup, asym: bool, token: &str, expected: TokenType, claims: &TokenPayload) {
    if let Err(why) = reference_accepts(s, asym, token) {
        panic!("accepted a token the reference refuses ({why}): {token:?}");
    }
    let (_, p, _) = segments(token).expect("checked above");
    let json = URL_SAFE_NO_PAD.decode(p).expect("payload base64");
    let parsed: TokenPayload =
        serde_json::from_slice(&json).expect("accepted payload must parse as TokenPayload");
    assert_eq!(&parsed, claims, "claims differ from the payload");
    assert_eq!(claims.token_type, expected, "wrong token type accepted");
    let now = NOW + 60;
    assert!(
        claims.exp.saturating_add(LEEWAY) >= now,
        "expired token accepted"
    );
    assert!(claims.iat <= now + LEEWAY, "token from the future accepted");
    assert!(
        claims.nbf.is_none_or(|n| n <= now + LEEWAY),
        "token not yet valid accepted"
    );
    assert!(claims.aud.is_none(), "aud accepted without an audience");
}

fn outcome(r: &Result<TokenPayload, tower_jwt_auth::AuthError>) -> String {
    match r {
        Ok(p) => format!("ok {}", p.jti),
        Err(e) => format!("{e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let s = setup();
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let asym = control & 1 == 1;
    let expected = if control & 2 == 0 {
        TokenType::Access
    } else {
        TokenType::Refresh
    };
    let signed_mode = control & 4 == 4;
    let auth = if asym { &s.asym } else { &s.hs };

    if !signed_mode {
        let token = String::from_utf8_lossy(rest);
        let result = auth.verify(&token, expected);
        if let Ok(claims) = &result {
            check_accepted(s, asym, &token, expected, claims);
            let (h, p, _) = segments(&token).expect("checked");
            assert!(
                s.inputs.iter().any(|i| *i == format!("{h}.{p}")),
                "accepted a token we never signed: {token:?}"
            );
        }
        if asym {
            // The cache must never change an answer, including on a second look.
            let again = auth.verify(&token, expected);
            let uncached = s.asym_uncached.verify(&token, expected);
            assert_eq!(
                outcome(&result),
                outcome(&again),
                "cache changed the answer"
            );
            assert_eq!(outcome(&result), outcome(&uncached), "cache differs");
        }
        return;
    }

    // Signed mode: key choice, then header JSON, a 0 byte, payload JSON.
    let Some((&key_choice, rest)) = rest.split_first() else {
        return;
    };
    let (header, payload) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b"{}"[..]),
    };
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let choice = key_choice % 5;
    let token = match choice {
        // The configured key: the HS256 secret, or the Ed25519 private key.
        0 if !asym => hs256_token(header, payload, SECRET),
        0 => {
            let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &s.ed_key, Algorithm::EdDSA)
                .expect("ed25519 signs");
            format!("{message}.{sig}")
        }
        1 => hs256_token(header, payload, ATTACKER_SECRET),
        // Algorithm confusion: the public key as an HMAC secret.
        2 => hs256_token(header, payload, RSA_PUBLIC),
        3 => hs256_token(header, payload, ED_PUBLIC),
        _ => format!("{message}."),
    };
    let result = auth.verify(&token, expected);
    if let Ok(claims) = &result {
        assert_eq!(
            choice, 0,
            "accepted a token signed with the wrong key: {token:?}"
        );
        check_accepted(s, asym, &token, expected, claims);
    }
    if asym {
        let uncached = s.asym_uncached.verify(&token, expected);
        assert_eq!(outcome(&result), outcome(&uncached), "cache differs");
    }
});
