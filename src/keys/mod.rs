//! Keys: configured as [`Key`]s, prepared once at build time ([`verifying`], [`hmac`]),
//! and held together by the [`KeySource`] that the request path asks for them.

mod hmac;
mod known;
mod source;
mod verifying;

use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

pub(crate) use self::hmac::HmacKey;
pub(crate) use self::source::{KeySource, Keys, Selected};
pub(crate) use self::verifying::{KeyId, VerifyingKey};
use self::verifying::{KeyKind, PublicKey};
use crate::error::ConfigError;

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tower-jwt-auth needs a crypto backend: enable the `aws-lc-rs` (default) or the `rust-crypto` feature"
);

// With both backends on (feature unification, `--all-features`) AWS-LC wins, so
// `jsonwebtoken` never meets its "no provider" panic.
#[cfg(feature = "aws-lc-rs")]
pub(super) static PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
pub(super) static PROVIDER: &CryptoProvider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

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
    /// At least one half; the public one is derived from the private one when absent.
    Pem {
        private: Option<Vec<u8>>,
        public: Option<Vec<u8>>,
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
                public: Some(public_pem.as_ref().to_vec()),
            },
        }
    }

    /// An asymmetric private key from PEM (RS*, PS*, ES256/384, EdDSA): signs, and
    /// verifies with the public key derived from it.
    ///
    /// ```
    /// use tower_jwt_auth::{Algorithm, JwtAuth, Key};
    ///
    /// let private = include_bytes!("../../tests/keys/ec_private.pem");
    /// let auth = JwtAuth::builder()
    ///     .signing_key(Key::private_pem(Algorithm::ES256, private))
    ///     .build()?;
    /// let token = auth.access_token("alice").issue()?;
    /// assert!(auth.verify(&token, tower_jwt_auth::TokenType::Access).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn private_pem(alg: Algorithm, private_pem: impl AsRef<[u8]>) -> Self {
        Self {
            alg,
            kid: None,
            material: Material::Pem {
                private: Some(private_pem.as_ref().to_vec()),
                public: None,
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
                public: Some(public_pem.as_ref().to_vec()),
            },
        }
    }

    /// Sets the key id written in the header of tokens signed with this key and
    /// used to select it when verifying.
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The RFC 7638 thumbprint (SHA-256) of the public key, for an asymmetric key
    /// that reads as its algorithm's.
    pub(crate) fn thumbprint(&self) -> Option<String> {
        install_provider();
        self.prepare()
            .ok()?
            .public_jwk()?
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .ok()
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
            (Material::Pem { .. }, AlgorithmFamily::Hmac) => {
                return Err(ConfigError::InvalidKey("HMAC keys are secrets".into()));
            }
            (Material::Pem { public, .. }, family) => {
                let key = match (public, family) {
                    (Some(public), AlgorithmFamily::Rsa) => DecodingKey::from_rsa_pem(public),
                    (Some(public), AlgorithmFamily::Ec) => DecodingKey::from_ec_pem(public),
                    (Some(public), _) => DecodingKey::from_ed_pem(public),
                    (None, _) => {
                        jsonwebtoken::jwk::Jwk::from_encoding_key(&self.encoding_key()?, self.alg)
                            .and_then(|jwk| DecodingKey::from_jwk(&jwk))
                    }
                }
                .map_err(invalid)?;
                // Prepared now, so a key that does not fit its algorithm fails now.
                KeyKind::Public(PublicKey::new(self.alg, key).ok_or_else(|| {
                    ConfigError::InvalidKey(format!(
                        "not a {:?} public key (RSA keys need 2048 bits at least)",
                        self.alg
                    ))
                })?)
            }
            (Material::Secret(_), _) => {
                return Err(ConfigError::InvalidKey(
                    "a secret can only be used with HS256/384/512".into(),
                ));
            }
        };
        let prepared = VerifyingKey::new(self.kid.clone(), self.alg, kind);
        if self.can_sign() {
            // Fail at build time, not at the first login.
            let signing = self.encoding_key()?;
            // Halves of two different pairs would sign tokens that nobody verifies,
            // and `jwks()` would publish a key that verifies none of them.
            if matches!(self.material, Material::Pem { .. }) && !pair_matches(&signing, &prepared) {
                return Err(ConfigError::InvalidKey(
                    "the private key is not the pair of the public key".into(),
                ));
            }
        }
        Ok(prepared)
    }
}

/// Whether `verifying` accepts what `signing` signs (an asymmetric pair's halves).
fn pair_matches(signing: &EncodingKey, verifying: &VerifyingKey) -> bool {
    use base64::Engine;
    const PROBE: &[u8] = b"tower-jwt-auth: does this private key belong to this public key?";
    jsonwebtoken::crypto::sign(PROBE, signing, verifying.alg)
        .ok()
        .and_then(|signature| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(signature)
                .ok()
        })
        .is_some_and(|signature| verifying.verify(PROBE, &signature))
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
