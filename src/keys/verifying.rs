//! Prepared verification keys and the ids that outlive a key set's changes.

use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

#[cfg(not(feature = "aws-lc-rs"))]
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
    Public(PublicKey),
}

/// An asymmetric public key, prepared for verification.
pub(super) struct PublicKey {
    /// Kept to publish the key (`public_jwk`) and to recognise it (`same_key`).
    key: DecodingKey,
    /// Parsed once: `jsonwebtoken`'s verifier copies the key, and AWS-LC parses it, on
    /// every verification.
    #[cfg(feature = "aws-lc-rs")]
    parsed: aws_lc_rs::signature::ParsedPublicKey,
}

impl PublicKey {
    /// `None` when the key does not fit `alg`.
    pub(super) fn new(alg: Algorithm, key: DecodingKey) -> Option<Self> {
        if key.family() != alg.family() {
            return None;
        }
        // RFC 7518 §3.3; AWS-LC would refuse every signature of a smaller key, RustCrypto
        // would accept them: refuse the key itself, on both.
        if key.family() == AlgorithmFamily::Rsa && rsa_modulus_bits(&key)? < 2048 {
            return None;
        }
        #[cfg(feature = "aws-lc-rs")]
        {
            let parsed = parse(alg, &key)?;
            Some(Self { key, parsed })
        }
        #[cfg(not(feature = "aws-lc-rs"))]
        {
            (PROVIDER.verifier_factory)(&alg, &key).ok()?;
            Some(Self { key })
        }
    }

    #[cfg_attr(feature = "aws-lc-rs", allow(unused_variables))]
    fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        #[cfg(feature = "aws-lc-rs")]
        {
            self.parsed.verify_sig(message, signature).is_ok()
        }
        #[cfg(not(feature = "aws-lc-rs"))]
        {
            match (PROVIDER.verifier_factory)(&alg, &self.key) {
                Ok(verifier) => verifier.verify(message, &signature.to_vec()).is_ok(),
                Err(_) => false,
            }
        }
    }
}

/// The size of an RSA key's modulus, in bits.
fn rsa_modulus_bits(key: &DecodingKey) -> Option<usize> {
    use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
    let AlgorithmParameters::RSA(rsa) = Jwk::from_decoding_key(key, None).ok()?.algorithm else {
        return None;
    };
    let n = base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(rsa.n.as_bytes())
        .ok()?;
    let first = n.iter().position(|&b| b != 0)?;
    let leading = n.get(first)?.leading_zeros() as usize;
    Some((n.len() - first) * 8 - leading)
}

/// `key` parsed for `alg` with the verification parameters `jsonwebtoken`'s AWS-LC
/// backend uses (RSA keys of 2048 to 8192 bits, fixed-size ECDSA signatures).
#[cfg(feature = "aws-lc-rs")]
fn parse(alg: Algorithm, key: &DecodingKey) -> Option<aws_lc_rs::signature::ParsedPublicKey> {
    use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
    use jsonwebtoken::DecodingKeyKind;
    let rsa = |params: &'static sig::RsaParameters| match key.kind() {
        DecodingKeyKind::SecretOrDer(der) => ParsedPublicKey::new(params, der).ok(),
        DecodingKeyKind::RsaModulusExponent { n, e } => RsaPublicKeyComponents {
            n: n.as_slice(),
            e: e.as_slice(),
        }
        .to_parsed_public_key(params)
        .ok(),
    };
    let raw = |algorithm: &'static dyn sig::VerificationAlgorithm| {
        ParsedPublicKey::new(algorithm, key.try_get_as_bytes().ok()?).ok()
    };
    match alg {
        Algorithm::RS256 => rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => rsa(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => rsa(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => rsa(&sig::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => raw(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => raw(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => raw(&sig::ED25519),
        // HMAC, and algorithms added later.
        _ => None,
    }
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
        let key = PublicKey::new(alg, key)?;
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
        let public = |key: &PublicKey| Jwk::from_decoding_key(&key.key, Some(self.alg)).ok();
        matches!((public(a), public(b)), (Some(a), Some(b)) if a == b)
    }

    /// The public JWK of an asymmetric key (`None` for HMAC): `kid` (its own, or the
    /// RFC 7638 thumbprint), `alg`, `use: "sig"`.
    pub(crate) fn public_jwk(&self) -> Option<jsonwebtoken::jwk::Jwk> {
        use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
        let KeyKind::Public(key) = &self.kind else {
            return None;
        };
        let mut jwk = Jwk::from_decoding_key(&key.key, Some(self.alg)).ok()?;
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
            KeyKind::Public(key) => key.verify(self.alg, message, signature),
        }
    }
}
