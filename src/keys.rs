//! Keys: prepared once at build time, selected by algorithm and `kid`.

use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

use crate::error::ConfigError;

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tower-jwt-auth needs a crypto backend: enable the `aws-lc-rs` (default) or the `rust-crypto` feature"
);

// With both backends on (feature unification, `--all-features`) AWS-LC wins, so
// `jsonwebtoken` never meets its "no provider" panic.
#[cfg(feature = "aws-lc-rs")]
static PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
static PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

/// Makes `jsonwebtoken`'s process-wide provider ours unless the application chose one.
pub(crate) fn install_provider() {
    let _ = PROVIDER.install_default();
}

/// A key for signing and/or verifying tokens.
///
/// ```
/// use tower_jwt_auth::Key;
///
/// let current = Key::hs256(b"an example secret of thirty-two bytes!").kid("2026-11");
/// # let _ = current;
/// ```
#[derive(Clone)]
pub struct Key {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    material: Material,
}

#[derive(Clone)]
enum Material {
    Secret(Vec<u8>),
    Pem {
        private: Option<Vec<u8>>,
        public: Vec<u8>,
    },
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// An HMAC key (HS256, HS384 or HS512). The secret must be at least as long as the
    /// hash output (32, 48 or 64 bytes), checked at build time.
    pub fn hmac(alg: Algorithm, secret: impl AsRef<[u8]>) -> Self {
        Self {
            alg,
            kid: None,
            material: Material::Secret(secret.as_ref().to_vec()),
        }
    }

    /// An HS256 key.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self::hmac(Algorithm::HS256, secret)
    }

    /// An asymmetric key pair from PEM (RS*, PS*, ES256/384, EdDSA): signs and verifies.
    pub fn pem_pair(
        alg: Algorithm,
        private_pem: impl AsRef<[u8]>,
        public_pem: impl AsRef<[u8]>,
    ) -> Self {
        Self {
            alg,
            kid: None,
            material: Material::Pem {
                private: Some(private_pem.as_ref().to_vec()),
                public: public_pem.as_ref().to_vec(),
            },
        }
    }

    /// An asymmetric public key from PEM: verifies only.
    pub fn public_pem(alg: Algorithm, public_pem: impl AsRef<[u8]>) -> Self {
        Self {
            alg,
            kid: None,
            material: Material::Pem {
                private: None,
                public: public_pem.as_ref().to_vec(),
            },
        }
    }

    /// Sets the key id written in the header of tokens signed with this key and
    /// used to select it when verifying.
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    pub(crate) fn can_sign(&self) -> bool {
        matches!(
            self.material,
            Material::Secret(_)
                | Material::Pem {
                    private: Some(_),
                    ..
                }
        )
    }

    pub(crate) fn encoding_key(&self) -> Result<EncodingKey, ConfigError> {
        let invalid = |e: jsonwebtoken::errors::Error| ConfigError::InvalidKey(e.to_string());
        match &self.material {
            Material::Secret(s) => Ok(EncodingKey::from_secret(s)),
            Material::Pem { private: None, .. } => {
                Err(ConfigError::InvalidKey("a public key cannot sign".into()))
            }
            Material::Pem {
                private: Some(p), ..
            } => match self.alg.family() {
                AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(p).map_err(invalid),
                AlgorithmFamily::Ec => EncodingKey::from_ec_pem(p).map_err(invalid),
                AlgorithmFamily::Ed => EncodingKey::from_ed_pem(p).map_err(invalid),
                AlgorithmFamily::Hmac => {
                    Err(ConfigError::InvalidKey("HMAC keys are secrets".into()))
                }
            },
        }
    }

    /// A prepared HMAC key for signing, when this is an HMAC key.
    pub(crate) fn hmac_signer(&self) -> Option<HmacKey> {
        match (&self.material, self.alg.family()) {
            (Material::Secret(secret), AlgorithmFamily::Hmac) => {
                Some(HmacKey::new(self.alg, secret))
            }
            _ => None,
        }
    }

    pub(crate) fn prepare(&self) -> Result<VerifyingKey, ConfigError> {
        let invalid = |e: jsonwebtoken::errors::Error| ConfigError::InvalidKey(e.to_string());
        let kind = match (&self.material, self.alg.family()) {
            (Material::Secret(secret), AlgorithmFamily::Hmac) => {
                let min_len = match self.alg {
                    Algorithm::HS384 => 48,
                    Algorithm::HS512 => 64,
                    _ => 32,
                };
                if secret.len() < min_len {
                    return Err(ConfigError::WeakSecret {
                        algorithm: alg_name(self.alg),
                        min_len,
                        len: secret.len(),
                    });
                }
                KeyKind::Hmac(HmacKey::new(self.alg, secret))
            }
            (Material::Pem { public, .. }, family) => {
                let key = match family {
                    AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(public),
                    AlgorithmFamily::Ec => DecodingKey::from_ec_pem(public),
                    AlgorithmFamily::Ed => DecodingKey::from_ed_pem(public),
                    AlgorithmFamily::Hmac => {
                        return Err(ConfigError::InvalidKey("HMAC keys are secrets".into()));
                    }
                }
                .map_err(invalid)?;
                // Build a verifier once so a key that does not fit its algorithm fails now.
                (PROVIDER.verifier_factory)(&self.alg, &key).map_err(invalid)?;
                KeyKind::Public(key)
            }
            (Material::Secret(_), _) => {
                return Err(ConfigError::InvalidKey(
                    "a secret can only be used with HS256/384/512".into(),
                ));
            }
        };
        if self.can_sign() {
            // Fail at build time, not at the first login.
            self.encoding_key()?;
        }
        Ok(VerifyingKey {
            id: KeyId::next(),
            kid: self.kid.clone(),
            alg: self.alg,
            kind,
        })
    }
}

/// The RFC 7638 thumbprint (SHA-256) of a public PEM key, if it reads as `alg`'s.
pub(crate) fn thumbprint(alg: Algorithm, public_pem: &[u8]) -> Option<String> {
    install_provider();
    let key = match alg.family() {
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(public_pem),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(public_pem),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(public_pem),
        AlgorithmFamily::Hmac => return None,
    }
    .ok()?;
    jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(alg))
        .ok()?
        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
        .ok()
}

pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

/// An HMAC tag (at most 64 bytes, SHA-512), on the stack.
pub(crate) struct Tag {
    bytes: [u8; 64],
    len: usize,
}

impl From<&[u8]> for Tag {
    fn from(tag: &[u8]) -> Self {
        let mut bytes = [0u8; 64];
        let len = tag.len().min(64);
        bytes[..len].copy_from_slice(&tag[..len]);
        Self { bytes, len }
    }
}

impl AsRef<[u8]> for Tag {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

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
enum KeyKind {
    Hmac(HmacKey),
    Public(DecodingKey),
}

impl VerifyingKey {
    /// A public key from a remote set, for one algorithm; `None` when the key does
    /// not fit the algorithm.
    #[cfg(feature = "jwks")]
    pub(crate) fn remote(kid: Option<String>, alg: Algorithm, key: DecodingKey) -> Option<Self> {
        (PROVIDER.verifier_factory)(&alg, &key).ok()?;
        Some(Self {
            id: KeyId::next(),
            kid,
            alg,
            kind: KeyKind::Public(key),
        })
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

#[cfg(feature = "aws-lc-rs")]
pub(crate) struct HmacKey(aws_lc_rs::hmac::Key);

#[cfg(feature = "aws-lc-rs")]
impl HmacKey {
    fn new(alg: Algorithm, secret: &[u8]) -> Self {
        use aws_lc_rs::hmac;
        let algorithm = match alg {
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => hmac::HMAC_SHA256,
        };
        Self(hmac::Key::new(algorithm, secret))
    }

    fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        aws_lc_rs::hmac::verify(&self.0, message, tag).is_ok()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Tag {
        Tag::from(aws_lc_rs::hmac::sign(&self.0, message).as_ref())
    }
}

#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
pub(crate) enum HmacKey {
    Sha256(hmac::Hmac<sha2::Sha256>),
    Sha384(hmac::Hmac<sha2::Sha384>),
    Sha512(hmac::Hmac<sha2::Sha512>),
}

#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
impl HmacKey {
    fn new(alg: Algorithm, secret: &[u8]) -> Self {
        use hmac::Mac;
        // `new_from_slice` accepts any key length for HMAC; the length was checked above.
        match alg {
            Algorithm::HS384 => {
                Self::Sha384(hmac::Hmac::new_from_slice(secret).unwrap_or_else(|_| unreachable!()))
            }
            Algorithm::HS512 => {
                Self::Sha512(hmac::Hmac::new_from_slice(secret).unwrap_or_else(|_| unreachable!()))
            }
            _ => {
                Self::Sha256(hmac::Hmac::new_from_slice(secret).unwrap_or_else(|_| unreachable!()))
            }
        }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Tag {
        use hmac::Mac;
        match self {
            Self::Sha256(k) => {
                Tag::from(&k.clone().chain_update(message).finalize().into_bytes()[..])
            }
            Self::Sha384(k) => {
                Tag::from(&k.clone().chain_update(message).finalize().into_bytes()[..])
            }
            Self::Sha512(k) => {
                Tag::from(&k.clone().chain_update(message).finalize().into_bytes()[..])
            }
        }
    }

    fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        use hmac::Mac;
        // `verify_slice` compares in constant time.
        match self {
            Self::Sha256(k) => {
                let mut m = k.clone();
                m.update(message);
                m.verify_slice(tag).is_ok()
            }
            Self::Sha384(k) => {
                let mut m = k.clone();
                m.update(message);
                m.verify_slice(tag).is_ok()
            }
            Self::Sha512(k) => {
                let mut m = k.clone();
                m.update(message);
                m.verify_slice(tag).is_ok()
            }
        }
    }
}
