//! HMAC keys, prepared once: signing and constant-time verification (RustCrypto's
//! `hmac` and `sha2`, whichever backend verifies the asymmetric algorithms).

use jsonwebtoken::Algorithm;

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

/// An HMAC key with its inner and outer states computed once: a MAC clones them
/// (a copy on the stack) and hashes the message. RustCrypto on either backend: the
/// AWS-LC HMAC sets up and copies a context per call, 1.4–1.7x the time of this one for
/// a 400-byte HS256 token (`benches/verify.rs`, `hmac` group).
pub(crate) enum HmacKey {
    Sha256(hmac::Hmac<sha2::Sha256>),
    Sha384(hmac::Hmac<sha2::Sha384>),
    Sha512(hmac::Hmac<sha2::Sha512>),
}

impl HmacKey {
    pub(super) fn new(alg: Algorithm, secret: &[u8]) -> Self {
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

    pub(super) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
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
