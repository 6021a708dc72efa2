//! Prepared verification keys and the ids that outlive a key set's changes.

use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, DecodingKey};

use super::PROVIDER;
use super::hmac::HmacKey;

/// Identifies one prepared key for the life of the process, so a cached token can
/// tell which key verified it (indexes would be reused when a key set changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyId(u64);

impl KeyId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    #[cfg(test)]
    pub(crate) fn for_tests(id: u64) -> Self {
        Self(id)
    }
}

/// A verification key prepared at build time.
pub(crate) struct VerifyingKey {
    pub(crate) id: KeyId,
    pub(crate) kid: Option<String>,
    pub(crate) alg: Algorithm,
    kind: KeyKind,
}

// Prepared once and kept in a Vec: boxing the large HMAC state would only add a
// pointer chase to every verification.
#[allow(clippy::large_enum_variant)]
pub(super) enum KeyKind {
    Hmac(HmacKey),
    Public(DecodingKey),
}

impl VerifyingKey {
    pub(super) fn new(kid: Option<String>, alg: Algorithm, kind: KeyKind) -> Self {
        Self {
            id: KeyId::next(),
            kid,
            alg,
            kind,
        }
    }

    /// A public key from a remote set, for one algorithm; `None` when the key does
    /// not fit the algorithm.
    #[cfg(feature = "jwks")]
    pub(crate) fn remote(kid: Option<String>, alg: Algorithm, key: DecodingKey) -> Option<Self> {
        (PROVIDER.verifier_factory)(&alg, &key).ok()?;
        Some(Self::new(kid, alg, KeyKind::Public(key)))
    }

    /// Whether `other` is this very key: the same `kid`, algorithm and public
    /// material. A re-fetched set keeps the identity (and the cached tokens) of the
    /// keys it still holds.
    #[cfg(feature = "jwks")]
    pub(crate) fn same_key(&self, other: &Self) -> bool {
        use jsonwebtoken::jwk::Jwk;
        if self.kid != other.kid || self.alg != other.alg {
            return false;
        }
        let (KeyKind::Public(a), KeyKind::Public(b)) = (&self.kind, &other.kind) else {
            return false;
        };
        let public = |key| Jwk::from_decoding_key(key, Some(self.alg)).ok();
        matches!((public(a), public(b)), (Some(a), Some(b)) if a == b)
    }

    /// The public JWK of an asymmetric key (`None` for HMAC): `kid` (its own, or the
    /// RFC 7638 thumbprint), `alg`, `use: "sig"`.
    pub(crate) fn public_jwk(&self) -> Option<jsonwebtoken::jwk::Jwk> {
        use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
        let KeyKind::Public(key) = &self.kind else {
            return None;
        };
        let mut jwk = Jwk::from_decoding_key(key, Some(self.alg)).ok()?;
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_id = match &self.kid {
            Some(kid) => Some(kid.clone()),
            None => Some(jwk.thumbprint(ThumbprintHash::SHA256).ok()?),
        };
        Some(jwk)
    }

    /// Verifies `signature` (already base64url-decoded) over `message`. Constant time
    /// for HMAC (the backend's own comparison).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.kind {
            KeyKind::Hmac(key) => key.verify(message, signature),
            KeyKind::Public(key) => match (PROVIDER.verifier_factory)(&self.alg, key) {
                Ok(verifier) => verifier.verify(message, &signature.to_vec()).is_ok(),
                Err(_) => false,
            },
        }
    }
}
