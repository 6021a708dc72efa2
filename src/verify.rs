//! The single-pass verification path.
//!
//! `jsonwebtoken::decode` parses the header twice and the payload twice and builds a
//! new verifier per call. Here the token is split once, the header is read once (only
//! the fields that matter), the signature is checked with a key prepared at build
//! time, and the payload is base64url-decoded once into a stack buffer and parsed once.
//! Nothing from the payload is trusted before the signature has been checked (I5).

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::cache::{Entry, VerifiedCache};
use crate::claims::TokenPayload;
use crate::error::TokenError;
use crate::keys::{KeyId, VerifyingKey};

/// A base64url header longer than this is refused before decoding (I5).
const MAX_HEADER_B64: usize = 1024;
/// Largest signature: RSA-4096 is 512 bytes.
const MAX_SIGNATURE: usize = 512;
/// Payloads up to this size decode on the stack.
const STACK_PAYLOAD: usize = 2048;

/// The JOSE header fields we read; everything else is ignored, never fetched
/// (`jku`, `x5u`, `jwk` are not trusted, RFC 8725 §3.10). Parsed strictly (RFC 7515
/// §4): `alg` and `kid` must be strings, member names must not repeat, and `crit`,
/// `zip` and `enc` are refused in any form, `null` included.
struct JoseHeader<'a> {
    alg: Algorithm,
    kid: Option<Cow<'a, str>>,
    /// A `crit`, `zip` or `enc` member was present.
    unsupported: bool,
}

/// A JSON string, borrowed from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Members a header may have: more is not a header this crate can meet.
const MAX_HEADER_MEMBERS: usize = 32;

impl<'de> Deserialize<'de> for JoseHeader<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JoseHeader<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JoseHeader<'de>, A::Error> {
                let (mut alg, mut kid, mut unsupported) = (None, None, false);
                let mut seen: Vec<Cow<'de, str>> = Vec::new();
                while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
                    if seen.contains(&name) || seen.len() >= MAX_HEADER_MEMBERS {
                        return Err(A::Error::custom("repeated or too many header members"));
                    }
                    match &*name {
                        "alg" => {
                            let Str(value) = map.next_value::<Str<'de>>()?;
                            // "none", "None", "hs256", "HS256 " all fail here.
                            let parsed = value.parse::<Algorithm>();
                            alg = Some(parsed.map_err(|_| A::Error::custom("unknown alg"))?);
                        }
                        "kid" => kid = Some(map.next_value::<Str<'de>>()?.0),
                        "crit" | "zip" | "enc" => {
                            map.next_value::<IgnoredAny>()?;
                            unsupported = true;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    seen.push(name);
                }
                Ok(JoseHeader {
                    alg: alg.ok_or_else(|| A::Error::missing_field("alg"))?,
                    kid,
                    unsupported,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// The claims rules (leeway, issuer, audience) prepared at build time.
pub(crate) struct Rules {
    pub(crate) leeway: u64,
    pub(crate) issuer: Option<String>,
    pub(crate) audience: Option<Vec<String>>,
    pub(crate) max_token_len: usize,
    /// Absolute session lifetime, counted from `auth_time`.
    pub(crate) max_session: Option<u64>,
}

/// The outcome of verifying a correctly signed token: its claims, or why its
/// claims were refused. `Expired` keeps the claims, so a caller can tell
/// "expired but genuine" (eligible for a refresh fallback) from a forgery.
pub(crate) enum Checked {
    Valid(Verified),
    Expired(Arc<TokenPayload>),
}

/// The claims of a valid token, shared with the cache.
pub(crate) struct Verified {
    pub(crate) payload: Arc<TokenPayload>,
    /// The token's cache entry (when the cache is on), which keeps custom claims.
    pub(crate) entry: Option<Arc<Entry>>,
}

/// What the claims rules say of a token's dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Validity {
    Valid,
    Expired,
}

pub(crate) struct Verifier<'k> {
    pub(crate) keys: &'k [VerifyingKey],
    /// Encoded headers seen at build time (the ones this crate and AuthX write), with
    /// the index of the key they select: such a header needs no decoding or parsing.
    pub(crate) known_headers: &'k [(Vec<u8>, usize)],
    pub(crate) rules: &'k Rules,
    /// Verified tokens (`None` when the cache is off).
    pub(crate) cache: Option<&'k VerifiedCache>,
    /// Remote key sets, each bound to its issuer, asked after the configured keys.
    #[cfg(feature = "jwks")]
    pub(crate) remote: &'k [crate::jwks::RemoteIssuer],
}

/// The encoded headers worth recognising without parsing: `jsonwebtoken`'s field
/// order and PyJWT/AuthX's, for every key. Each is run through the normal header
/// path here, so recognising it later is exactly equivalent to parsing it.
pub(crate) fn known_headers(keys: &[VerifyingKey]) -> Vec<(Vec<u8>, usize)> {
    let mut out: Vec<(Vec<u8>, usize)> = Vec::new();
    for key in keys {
        let alg = crate::keys::alg_name(key.alg);
        let mut candidates = Vec::new();
        let mut ours = jsonwebtoken::Header::new(key.alg);
        ours.kid = key.kid.clone();
        if let Ok(json) = serde_json::to_vec(&ours) {
            candidates.push(json);
        }
        match &key.kid {
            None => candidates.push(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).into_bytes()),
            Some(kid) => {
                if let Ok(kid) = serde_json::to_string(kid) {
                    candidates
                        .push(format!(r#"{{"alg":"{alg}","kid":{kid},"typ":"JWT"}}"#).into_bytes());
                }
            }
        }
        for json in candidates {
            let encoded = URL_SAFE_NO_PAD.encode(&json).into_bytes();
            let verifier = Verifier {
                keys,
                known_headers: &[],
                rules: &NO_RULES,
                cache: None,
                #[cfg(feature = "jwks")]
                remote: &[],
            };
            if let Ok(selected) = verifier.key_for_header(&encoded) {
                let index = keys.iter().position(|k| std::ptr::eq(k, selected));
                if let Some(index) = index
                    && !out.iter().any(|(h, _)| *h == encoded)
                {
                    out.push((encoded, index));
                }
            }
        }
    }
    out
}

static NO_RULES: Rules = Rules {
    leeway: 0,
    issuer: None,
    audience: None,
    max_token_len: 0,
    max_session: None,
};

const HEADER_BUF: usize = MAX_HEADER_B64 * 3 / 4 + 3;

/// Decodes and parses a JOSE header: bounded in size, parsed with serde's recursion
/// limit, strictly (see [`JoseHeader`]).
fn parse_header<'b>(
    header_b64: &[u8],
    header_buf: &'b mut [u8; HEADER_BUF],
) -> Result<JoseHeader<'b>, TokenError> {
    if header_b64.len() > MAX_HEADER_B64 {
        return Err(TokenError::Malformed);
    }
    let header_json = decode_into(header_b64, header_buf)?;
    // serde_json skips ignored members without checking their UTF-8, and a derived
    // struct also accepts an array: RFC 7515 §4 wants a UTF-8 JSON object.
    let header_json = std::str::from_utf8(header_json).map_err(|_| TokenError::Malformed)?;
    if !header_json
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(TokenError::Malformed);
    }
    let header: JoseHeader<'_> =
        serde_json::from_str(header_json).map_err(|_| TokenError::Malformed)?;
    if header.unsupported {
        return Err(TokenError::UnsupportedHeader);
    }
    Ok(header)
}

/// Splits a compact JWS into its three base64url parts, or refuses it.
/// The three base64url parts of a compact JWS: header, payload, signature.
type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn split(token: &[u8]) -> Result<Parts<'_>, TokenError> {
    // memchr: a byte-at-a-time split was a tenth of the whole verification.
    let malformed = TokenError::Malformed;
    let first = memchr::memchr(b'.', token).ok_or(malformed)?;
    let (header, rest) = (token.get(..first), token.get(first + 1..));
    let (header, rest) = header.zip(rest).ok_or(malformed)?;
    let second = memchr::memchr(b'.', rest).ok_or(malformed)?;
    let (payload, signature) = rest
        .get(..second)
        .zip(rest.get(second + 1..))
        .ok_or(malformed)?;
    if header.is_empty() || payload.is_empty() || memchr::memchr(b'.', signature).is_some() {
        return Err(malformed);
    }
    Ok((header, payload, signature))
}

fn decode_into<'b>(input: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], TokenError> {
    let n = URL_SAFE_NO_PAD
        .decode_slice(input, buf)
        .map_err(|_| TokenError::Malformed)?;
    buf.get(..n).ok_or(TokenError::Malformed)
}

impl Verifier<'_> {
    fn select(&self, alg: Algorithm, kid: Option<&str>) -> Result<&VerifyingKey, TokenError> {
        let found = match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.alg == alg && k.kid.as_deref() == Some(kid)),
            // Without a `kid`, the first key of that algorithm (the signing key comes first).
            None => self.keys.iter().find(|k| k.alg == alg),
        };
        found.ok_or(TokenError::UnsupportedAlgorithm)
    }

    /// The key a header selects. The header is the only part read before the
    /// signature is checked: bounded in size, parsed with serde's recursion limit.
    fn key_for_header(&self, header_b64: &[u8]) -> Result<&VerifyingKey, TokenError> {
        for (known, index) in self.known_headers {
            if known.as_slice() == header_b64 {
                return self
                    .keys
                    .get(*index)
                    .ok_or(TokenError::UnsupportedAlgorithm);
            }
        }
        let mut header_buf = [0u8; HEADER_BUF];
        let header = parse_header(header_b64, &mut header_buf)?;
        // The key comes from configuration, matched by the header's alg and kid.
        self.select(header.alg, header.kid.as_deref())
    }

    /// Verifies signature and claims. `now` is seconds since the epoch.
    pub(crate) fn verify(&self, token: &[u8], now: u64) -> Result<Checked, TokenError> {
        if token.len() > self.rules.max_token_len {
            return Err(TokenError::TooLong);
        }
        if let Some(cache) = self.cache
            && let Some(entry) = cache.get(token)
        {
            // A token verified by a key no longer held (rotated out of a remote set)
            // is verified again, so the cache never outlives its key.
            if let Some(rules) = self.rules_of(entry.key) {
                // The same rules as below, with the same clock and leeway.
                return match rules.check(&entry.payload, now)? {
                    Validity::Valid => Ok(Checked::Valid(Verified {
                        payload: Arc::clone(&entry.payload),
                        entry: Some(entry),
                    })),
                    Validity::Expired => {
                        cache.remove(token);
                        Ok(Checked::Expired(Arc::clone(&entry.payload)))
                    }
                };
            }
            cache.remove(token);
        }
        let (header_b64, payload_b64, signature_b64) = split(token)?;
        let key = match self.key_for_header(header_b64) {
            Ok(key) => key,
            // No configured key: the token may be an identity provider's.
            #[cfg(feature = "jwks")]
            Err(TokenError::UnsupportedAlgorithm) if !self.remote.is_empty() => {
                return self.verify_remote(token, (header_b64, payload_b64, signature_b64), now);
            }
            Err(e) => return Err(e),
        };

        // 3. The signature over the raw signing input.
        if signature_b64.len() > MAX_SIGNATURE * 4 / 3 + 4 {
            return Err(TokenError::InvalidSignature);
        }
        let signing_input = token
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(TokenError::Malformed)?;
        let valid = with_decoded(signature_b64, |signature| {
            Ok(key.verify(signing_input, signature))
        })?;
        if !valid {
            return Err(TokenError::InvalidSignature);
        }

        // 4. The payload, decoded and parsed once.
        let payload = with_decoded(payload_b64, parse_claims)?;

        // 5. The registered claims.
        let validity = self.rules.check(&payload, now)?;
        Ok(self.admit(token, Arc::new(payload), validity, key.id))
    }

    /// The rules for a token verified by `key`, while that key is held: the
    /// configured ones for a static key, its issuer's for a remote one.
    fn rules_of(&self, key: KeyId) -> Option<&Rules> {
        if self.keys.iter().any(|k| k.id == key) {
            return Some(self.rules);
        }
        #[cfg(feature = "jwks")]
        if let Some(issuer) = self.remote.iter().find(|issuer| issuer.set.holds(key)) {
            return Some(&issuer.rules);
        }
        None
    }

    /// The verdict on a token whose signature `key` verified, kept in the cache
    /// when valid (never an expired or not-yet-valid one).
    fn admit(
        &self,
        token: &[u8],
        payload: Arc<TokenPayload>,
        validity: Validity,
        key: KeyId,
    ) -> Checked {
        match validity {
            Validity::Valid => {
                let entry = self.cache.and_then(|cache| {
                    cache.admit(token, || Arc::new(Entry::new(Arc::clone(&payload), key)))
                });
                Checked::Valid(Verified { payload, entry })
            }
            Validity::Expired => Checked::Expired(payload),
        }
    }
}

#[cfg(feature = "jwks")]
impl Verifier<'_> {
    /// Verifies a token with the key its header names in a remote set, then its
    /// claims with that set's rules (its issuer, its audience). An unknown `kid`
    /// asks the sets for a refresh (at most once per cooldown) and is refused now.
    /// Valid remote tokens are cached like the others, tied to the key that verified
    /// them (see [`Verifier::rules_of`]).
    fn verify_remote(
        &self,
        token: &[u8],
        parts: Parts<'_>,
        now: u64,
    ) -> Result<Checked, TokenError> {
        use crate::jwks::Miss;
        let (header_b64, payload_b64, signature_b64) = parts;
        let mut header_buf = [0u8; HEADER_BUF];
        let header = parse_header(header_b64, &mut header_buf)?;
        if signature_b64.len() > MAX_SIGNATURE * 4 / 3 + 4 {
            return Err(TokenError::InvalidSignature);
        }
        let signing_input = token
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(TokenError::Malformed)?;
        let (mut unavailable, mut unknown) = (false, false);
        // Two issuers may publish the same `kid`: a set whose key does not verify the
        // token, or whose issuer is not the token's, leaves it to the next set.
        let mut refused = None;
        for issuer in self.remote {
            let verified = issuer
                .set
                .with_key(header.kid.as_deref(), header.alg, |key| {
                    with_decoded(signature_b64, |signature| {
                        Ok((key.verify(signing_input, signature), key.id))
                    })
                });
            match verified {
                Ok(Ok((true, key))) => {
                    let mut payload = with_decoded(payload_b64, parse_foreign_claims)?;
                    // Only access tokens come from a remote set: a refresh token of this
                    // crate, verified elsewhere through the set it publishes, must not
                    // pass as one (its `type` is otherwise just an extra claim here).
                    if payload.extra.get("type").and_then(|t| t.as_str()) == Some("refresh") {
                        return Err(TokenError::WrongType);
                    }
                    if payload.jti.is_empty() {
                        payload.jti = crate::jwks::token_id(token);
                    }
                    match issuer.rules.check(&payload, now) {
                        Err(TokenError::InvalidIssuer) => refused = Some(TokenError::InvalidIssuer),
                        Err(e) => return Err(e),
                        Ok(validity) => {
                            return Ok(self.admit(token, Arc::new(payload), validity, key));
                        }
                    }
                }
                Ok(Ok((false, _))) => refused = refused.or(Some(TokenError::InvalidSignature)),
                Ok(Err(e)) => return Err(e),
                Err(Miss::Unavailable) => unavailable = true,
                Err(Miss::UnknownKid) => unknown = true,
                Err(Miss::WrongAlgorithm) => {}
            }
        }
        if let Some(error) = refused {
            return Err(error);
        }
        if unknown {
            for issuer in self.remote {
                // The fetch is started now; this request does not wait for it.
                drop(issuer.set.refresh_for_unknown_kid());
            }
        }
        Err(if unavailable {
            TokenError::KeysUnavailable
        } else {
            TokenError::UnsupportedAlgorithm
        })
    }
}

#[cfg(feature = "jwks")]
fn parse_foreign_claims(json: &[u8]) -> Result<TokenPayload, TokenError> {
    match serde_json::from_slice::<crate::claims::ForeignPayload>(json) {
        Ok(payload) => Ok(payload.0),
        Err(e) if e.is_data() => Err(TokenError::InvalidClaims),
        Err(_) => Err(TokenError::Malformed),
    }
}

/// Base64url-decodes `input` into a stack buffer sized to it (zeroing a large buffer
/// for a small input costs more than the decoding), or onto the heap past 2 KiB.
fn with_decoded<R>(
    input: &[u8],
    f: impl FnOnce(&[u8]) -> Result<R, TokenError>,
) -> Result<R, TokenError> {
    let decoded_len = input.len() / 4 * 3 + 3;
    if decoded_len <= 96 {
        f(decode_into(input, &mut [0u8; 96])?)
    } else if decoded_len <= 512 {
        f(decode_into(input, &mut [0u8; 512])?)
    } else if decoded_len <= STACK_PAYLOAD {
        f(decode_into(input, &mut [0u8; STACK_PAYLOAD])?)
    } else {
        let bytes = URL_SAFE_NO_PAD
            .decode(input)
            .map_err(|_| TokenError::Malformed)?;
        f(&bytes)
    }
}

fn parse_claims(json: &[u8]) -> Result<TokenPayload, TokenError> {
    // serde_json's recursion limit (128) bounds nesting; never `unbounded_depth`.
    serde_json::from_slice(json).map_err(|e| {
        if e.is_data() {
            TokenError::InvalidClaims
        } else {
            TokenError::Malformed
        }
    })
}

impl Rules {
    /// The registered-claims rules: the one check for cached and uncached tokens.
    pub(crate) fn check(&self, payload: &TokenPayload, now: u64) -> Result<Validity, TokenError> {
        let latest = now.saturating_add(self.leeway);
        if payload.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(TokenError::NotYetValid);
        }
        if payload.iat > latest {
            return Err(TokenError::IssuedInFuture);
        }
        if let Some(issuer) = &self.issuer
            && payload.iss.as_deref() != Some(issuer.as_str())
        {
            return Err(TokenError::InvalidIssuer);
        }
        // RFC 7519 §4.1.3: a token whose `aud` does not name this service is refused,
        // and so is one with an `aud` when no audience is configured.
        let audience_ok = match (&self.audience, payload.aud.as_deref()) {
            (Some(ours), Some(aud)) => aud.iter().any(|a| ours.contains(a)),
            (Some(_), None) | (None, Some(_)) => false,
            (None, None) => true,
        };
        if !audience_ok {
            return Err(TokenError::InvalidAudience);
        }
        // Same comparison as `jsonwebtoken`: expired when exp < now - leeway. A session
        // past its absolute lifetime is expired too (and cannot fall back to a refresh).
        // Without `auth_time` (AuthX's tokens) the session began no later than `iat`.
        let session_over = self.max_session.is_some_and(|max| {
            payload
                .session_start()
                .saturating_add(max)
                .saturating_add(self.leeway)
                < now
        });
        if session_over {
            return Err(TokenError::Expired);
        }
        if payload.exp.saturating_add(self.leeway) < now {
            return Ok(Validity::Expired);
        }
        Ok(Validity::Valid)
    }
}

/// Decodes the payload of an already verified token into a caller's claims type.
pub(crate) fn decode_custom<C: serde::de::DeserializeOwned>(token: &[u8]) -> Result<C, TokenError> {
    let payload_b64 = split(token)?.1;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::InvalidClaims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_needs_exactly_three_parts() {
        assert_eq!(split(b"a.b.c").unwrap(), (&b"a"[..], &b"b"[..], &b"c"[..]));
        assert_eq!(
            split(b"a.b.").unwrap().2,
            b"",
            "an empty signature is split, then refused"
        );
        for bad in [
            &b""[..],
            b"a",
            b"a.b",
            b"a.b.c.d",
            b".b.c",
            b"a..c",
            b"....",
            b"a.b.c.",
        ] {
            assert_eq!(split(bad), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    mod cache {
        use super::super::*;
        use crate::keys::Key;

        const NOW: u64 = 1_800_000_000;
        const RULES: Rules = Rules {
            leeway: 5,
            issuer: None,
            audience: None,
            max_token_len: 8192,
            max_session: None,
        };

        fn key(kid: &str, secret: u8) -> (Key, VerifyingKey) {
            crate::keys::install_provider();
            let key = Key::hs256([secret; 32]).kid(kid);
            let prepared = key.prepare().unwrap();
            (key, prepared)
        }

        fn sign(key: &Key, claims: &str) -> String {
            let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
            header.kid = key.kid.clone();
            let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
            jsonwebtoken::encode(&header, &claims, &key.encoding_key().unwrap()).unwrap()
        }

        fn token(key: &Key, exp: u64, nbf: Option<u64>) -> String {
            let nbf = nbf.map_or(String::new(), |n| format!(r#","nbf":{n}"#));
            sign(
                key,
                &format!(r#"{{"sub":"a","jti":"j","type":"access","iat":{NOW},"exp":{exp}{nbf}}}"#),
            )
        }

        fn verifier<'k>(keys: &'k [VerifyingKey], cache: &'k VerifiedCache) -> Verifier<'k> {
            Verifier {
                keys,
                known_headers: &[],
                rules: &RULES,
                cache: Some(cache),
                #[cfg(feature = "jwks")]
                remote: &[],
            }
        }

        fn is_valid(r: Result<Checked, TokenError>) -> bool {
            matches!(r, Ok(Checked::Valid(_)))
        }

        #[test]
        fn a_key_rotated_out_does_not_verify_through_the_cache() {
            let (k1, p1) = key("k1", 1);
            let (_, p2) = key("k2", 2);
            let cache = VerifiedCache::new(16);
            let t = token(&k1, NOW + 60, None);
            let both = [p1, p2];
            assert!(is_valid(verifier(&both, &cache).verify(t.as_bytes(), NOW)));
            assert!(is_valid(verifier(&both, &cache).verify(t.as_bytes(), NOW)));
            assert_eq!(cache.len(), 1);
            // The key set without k1 (a rotation): the cached entry must not answer.
            let [p1, p2] = both;
            let rotated = [p2];
            let r = verifier(&rotated, &cache).verify(t.as_bytes(), NOW);
            assert_eq!(r.err(), Some(TokenError::UnsupportedAlgorithm));
            assert_eq!(cache.len(), 0, "the stale entry was dropped");
            // The invalidation hook drops a key's entries at once.
            let again = [p1];
            assert!(is_valid(verifier(&again, &cache).verify(t.as_bytes(), NOW)));
            cache.forget_key(again[0].id);
            assert_eq!(cache.len(), 0);
        }

        #[test]
        fn only_valid_tokens_are_stored() {
            let (k1, p1) = key("k1", 1);
            let keys = [p1];
            let cache = VerifiedCache::new(16);
            let v = verifier(&keys, &cache);
            let expired = token(&k1, NOW - 6, None);
            assert!(matches!(
                v.verify(expired.as_bytes(), NOW),
                Ok(Checked::Expired(_))
            ));
            let early = token(&k1, NOW + 60, Some(NOW + 6));
            assert_eq!(
                v.verify(early.as_bytes(), NOW).err(),
                Some(TokenError::NotYetValid)
            );
            assert_eq!(cache.len(), 0);
            // Within the leeway both are valid, and stored on their second valid
            // sight (the invalid ones above did not count).
            for _ in 0..2 {
                assert!(is_valid(v.verify(expired.as_bytes(), NOW - 1)));
                assert!(is_valid(v.verify(early.as_bytes(), NOW + 1)));
            }
            assert_eq!(cache.len(), 2);
        }

        #[test]
        fn a_hit_checks_the_dates_again_with_the_leeway() {
            let (k1, p1) = key("k1", 1);
            let keys = [p1];
            let cache = VerifiedCache::new(16);
            let v = verifier(&keys, &cache);
            let t = token(&k1, NOW + 10, None);
            assert!(is_valid(v.verify(t.as_bytes(), NOW)));
            assert!(is_valid(v.verify(t.as_bytes(), NOW + 15)), "exp + leeway");
            assert!(matches!(
                v.verify(t.as_bytes(), NOW + 16),
                Ok(Checked::Expired(_))
            ));
            assert_eq!(cache.len(), 0, "an expired entry is dropped");
        }
    }
}
