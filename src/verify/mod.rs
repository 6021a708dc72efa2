//! The single-pass verification path.
//!
//! `jsonwebtoken::decode` parses the header twice and the payload twice and builds a
//! new verifier per call. Here the token is split once, the header is read once (only
//! the fields that matter), the signature is checked with a key prepared at build
//! time, and the payload is base64url-decoded once into a stack buffer and parsed once.
//! Nothing from the payload is trusted before the signature has been checked (I5).

pub(crate) mod header;
#[cfg(feature = "jwks")]
mod remote;

use std::mem::MaybeUninit;
use std::sync::Arc;

use base64_simd::{Out, URL_SAFE_NO_PAD};

use crate::cache::{Entry, VerifiedCache};
use crate::claims::TokenPayload;
use crate::error::TokenError;
use crate::keys::{KeyId, Keys, Selected};

/// Largest signature: RSA-4096 is 512 bytes.
const MAX_SIGNATURE: usize = 512;
/// Payloads up to this size decode on the stack.
const STACK_PAYLOAD: usize = 2048;

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
    /// The keys this verification may use (all, or this crate's own only).
    pub(crate) keys: Keys<'k>,
    pub(crate) rules: &'k Rules,
    /// Verified tokens (`None` when the cache is off).
    pub(crate) cache: Option<&'k VerifiedCache>,
}

/// The three base64url parts of a compact JWS: header, payload, signature.
type Parts<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// Splits a compact JWS into its three base64url parts, or refuses it.
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

/// Base64url-decodes `input` into `buf`, strictly: no padding, no other alphabet, and
/// the unused bits of the last character must be zero (one encoding per token).
/// SIMD (`base64-simd`): the scalar decoder was a tenth of a verification.
fn decode_into<'b>(input: &[u8], buf: impl Into<Out<'b, [u8]>>) -> Result<&'b [u8], TokenError> {
    let buf = buf.into();
    let len = URL_SAFE_NO_PAD
        .decoded_length(input)
        .map_err(|_| TokenError::Malformed)?;
    // `decode` panics on a short buffer: refuse instead.
    if len > buf.len() {
        return Err(TokenError::Malformed);
    }
    match URL_SAFE_NO_PAD.decode(input, buf) {
        Ok(decoded) => Ok(decoded),
        Err(_) => Err(TokenError::Malformed),
    }
}

impl Verifier<'_> {
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
            if let Some(rules) = self.keys.rules_of(entry.key, self.rules) {
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
        let mut header_buf = header::buffer();
        let key = match self.keys.for_header(header_b64, &mut header_buf)? {
            Selected::Static(key) => key,
            // No configured key: the token may be an identity provider's.
            #[cfg(feature = "jwks")]
            Selected::Unmatched(header) if self.keys.has_remote() => {
                let parts = (header_b64, payload_b64, signature_b64);
                return self.verify_remote(token, &header, parts, now);
            }
            Selected::Unmatched(_) => return Err(TokenError::UnsupportedAlgorithm),
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

/// Base64url-decodes `input` into an uninitialised stack buffer (nothing to zero), or
/// onto the heap past 2 KiB.
fn with_decoded<R>(
    input: &[u8],
    f: impl FnOnce(&[u8]) -> Result<R, TokenError>,
) -> Result<R, TokenError> {
    if input.len() / 4 * 3 + 3 <= STACK_PAYLOAD {
        let mut buf = [MaybeUninit::<u8>::uninit(); STACK_PAYLOAD];
        f(decode_into(input, Out::from_uninit_slice(&mut buf))?)
    } else {
        let bytes = URL_SAFE_NO_PAD
            .decode_to_vec(input)
            .map_err(|_| TokenError::Malformed)?;
        f(&bytes)
    }
}

fn parse_claims(json: &[u8]) -> Result<TokenPayload, TokenError> {
    // One UTF-8 check of the whole payload (word at a time over ASCII) instead of
    // `from_slice`'s check of every string: a tenth of the parse.
    let json = std::str::from_utf8(json).map_err(|_| TokenError::Malformed)?;
    // serde_json's recursion limit (128) bounds nesting; never `unbounded_depth`.
    serde_json::from_str(json).map_err(|e| {
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
        .decode_to_vec(payload_b64)
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

    #[test]
    fn base64url_decoding_is_strict() {
        let mut buf = [0u8; 8];
        assert_eq!(
            decode_into(b"QQ", Out::from_slice(&mut buf[..])),
            Ok(&b"A"[..])
        );
        assert_eq!(
            decode_into(b"_-8", Out::from_slice(&mut buf[..])),
            Ok(&[0xff, 0xef][..])
        );
        // Unused trailing bits set, padding, the standard alphabet, whitespace, a
        // length no encoding has: all refused, so a token has one spelling only.
        for bad in [
            &b"QR"[..],
            b"QQ==",
            b"QQ=",
            b"+/8",
            b"Q Q",
            b"QUJDR",
            b"Q\n",
        ] {
            assert_eq!(
                decode_into(bad, Out::from_slice(&mut buf[..])),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
        // Longer than the buffer: refused, never a panic.
        assert_eq!(
            decode_into(b"QUJDREVGR0hJSktM", Out::from_slice(&mut buf[..])),
            Err(TokenError::Malformed)
        );
        assert!(with_decoded(&[b'Q'; 4096], |d| Ok(d.len())).is_ok_and(|n| n == 3072));
    }

    mod cache {
        use super::super::*;
        use crate::keys::{Key, KeySource, VerifyingKey};
        use jsonwebtoken::Algorithm;

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

        fn verifier<'k>(keys: &'k KeySource, cache: &'k VerifiedCache) -> Verifier<'k> {
            Verifier {
                keys: keys.all(),
                rules: &RULES,
                cache: Some(cache),
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
            let k1_id = p1.id;
            let both = KeySource::new(vec![p1, p2]);
            assert!(is_valid(verifier(&both, &cache).verify(t.as_bytes(), NOW)));
            assert!(is_valid(verifier(&both, &cache).verify(t.as_bytes(), NOW)));
            assert_eq!(cache.len(), 1);
            // The key set without k1 (a rotation): the cached entry must not answer.
            let [p1, p2] = <[VerifyingKey; 2]>::try_from(both.into_keys())
                .ok()
                .unwrap();
            let rotated = KeySource::new(vec![p2]);
            let r = verifier(&rotated, &cache).verify(t.as_bytes(), NOW);
            assert_eq!(r.err(), Some(TokenError::UnsupportedAlgorithm));
            assert_eq!(cache.len(), 0, "the stale entry was dropped");
            // The invalidation hook drops a key's entries at once.
            let again = KeySource::new(vec![p1]);
            assert!(is_valid(verifier(&again, &cache).verify(t.as_bytes(), NOW)));
            cache.forget_keys(&[k1_id]);
            assert_eq!(cache.len(), 0);
        }

        #[test]
        fn only_valid_tokens_are_stored() {
            let (k1, p1) = key("k1", 1);
            let keys = KeySource::new(vec![p1]);
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
            // sight (the invalid ones above did not count). Each is seen twice in a
            // row: two tokens may share a doorkeeper slot (the hasher is seeded per
            // process), and then alternating sights never admit either.
            for _ in 0..2 {
                assert!(is_valid(v.verify(expired.as_bytes(), NOW - 1)));
            }
            for _ in 0..2 {
                assert!(is_valid(v.verify(early.as_bytes(), NOW + 1)));
            }
            assert_eq!(cache.len(), 2);
        }

        #[test]
        fn a_hit_checks_the_dates_again_with_the_leeway() {
            let (k1, p1) = key("k1", 1);
            let keys = KeySource::new(vec![p1]);
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
