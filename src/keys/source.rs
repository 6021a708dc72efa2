//! [`KeySource`]: every key a token may be verified with, in one component: the
//! configured (static) keys, their pre-encoded headers, and (feature `jwks`) the
//! identity providers' remote sets, each bound to its issuer.
//!
//! The request path borrows a [`Keys`] view of it: all the keys, or only the static
//! ones for this crate's own tokens (a cookie is never verified with a provider's key).

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;

use super::known;
use super::{KeyId, VerifyingKey};
use crate::error::TokenError;
use crate::verify::Rules;
use crate::verify::header::{self, HeaderBuf, JoseHeader};

/// The keys of a [`JwtAuth`](crate::JwtAuth), built once by the builder.
pub(crate) struct KeySource {
    /// The configured keys, the signing key first.
    keys: Vec<VerifyingKey>,
    /// Encoded headers seen at build time (the ones this crate and AuthX write), with
    /// the index of the key they select: such a header needs no decoding or parsing.
    known_headers: Vec<(Vec<u8>, usize)>,
    /// Identity providers' key sets, each bound to its issuer.
    #[cfg(feature = "jwks")]
    remote: Vec<crate::jwks::RemoteIssuer>,
}

impl KeySource {
    /// The static keys (the signing key first), with their known headers.
    pub(crate) fn new(keys: Vec<VerifyingKey>) -> Self {
        Self {
            // Each candidate goes through the normal header path, so recognising it
            // later is exactly equivalent to parsing it.
            known_headers: known::headers(&keys, |header_b64| {
                let selected = parsed_key(&keys, header_b64)?;
                keys.iter().position(|k| std::ptr::eq(k, selected))
            }),
            keys,
            #[cfg(feature = "jwks")]
            remote: Vec::new(),
        }
    }

    /// Adds identity providers' sets, asked after the static keys.
    #[cfg(feature = "jwks")]
    pub(crate) fn with_remote(mut self, remote: Vec<crate::jwks::RemoteIssuer>) -> Self {
        self.remote = remote;
        self
    }

    /// Every key: static, then remote.
    pub(crate) fn all(&self) -> Keys<'_> {
        Keys {
            keys: &self.keys,
            known_headers: &self.known_headers,
            #[cfg(feature = "jwks")]
            remote: &self.remote,
        }
    }

    /// The static keys only: this crate's own tokens (cookies, implicit refresh,
    /// rotation), never an identity provider's.
    pub(crate) fn own(&self) -> Keys<'_> {
        Keys {
            #[cfg(feature = "jwks")]
            remote: &[],
            ..self.all()
        }
    }

    /// How many static keys there are (for `Debug`).
    pub(crate) fn static_count(&self) -> usize {
        self.keys.len()
    }

    /// The JWK Set to publish: the public parts of the static asymmetric keys
    /// (never HMAC keys, never a provider's).
    pub(crate) fn jwk_set(&self) -> JwkSet {
        JwkSet {
            keys: self
                .keys
                .iter()
                .filter_map(VerifyingKey::public_jwk)
                .collect(),
        }
    }

    /// Takes the static keys back (tests that rotate keys between verifications).
    #[cfg(test)]
    pub(crate) fn into_keys(self) -> Vec<VerifyingKey> {
        self.keys
    }
}

/// The keys one verification may use, borrowed from a [`KeySource`]: plain slices,
/// so the request path pays no more than it would reading the source's fields.
#[derive(Clone, Copy)]
pub(crate) struct Keys<'k> {
    keys: &'k [VerifyingKey],
    known_headers: &'k [(Vec<u8>, usize)],
    #[cfg(feature = "jwks")]
    remote: &'k [crate::jwks::RemoteIssuer],
}

impl<'k> Keys<'k> {
    /// The static key a header selects, or the parsed header when none does (for the
    /// remote sets, so it is parsed once). The header is the only part read before the
    /// signature is checked: bounded in size, parsed with serde's recursion limit.
    pub(crate) fn for_header<'b>(
        self,
        header_b64: &[u8],
        header_buf: &'b mut HeaderBuf,
    ) -> Result<Selected<'k, 'b>, TokenError> {
        for (known, index) in self.known_headers {
            if known.as_slice() == header_b64 {
                return self
                    .keys
                    .get(*index)
                    .map(Selected::Static)
                    .ok_or(TokenError::UnsupportedAlgorithm);
            }
        }
        let header = header::parse(header_b64, header_buf)?;
        Ok(match select(self.keys, header.alg, header.kid.as_deref()) {
            Some(key) => Selected::Static(key),
            None => Selected::Unmatched(header),
        })
    }

    /// The rules for a token verified by `key`, while that key is held: `own` (the
    /// configured ones) for a static key, its issuer's for a remote one; `None` once
    /// the key has left its set, or when it is a remote key and this view holds only
    /// the static ones.
    pub(crate) fn rules_of<'r>(self, key: KeyId, own: &'r Rules) -> Option<&'r Rules>
    where
        'k: 'r,
    {
        if self.keys.iter().any(|k| k.id == key) {
            return Some(own);
        }
        #[cfg(feature = "jwks")]
        if let Some(issuer) = self.remote.iter().find(|issuer| issuer.set.holds(key)) {
            return Some(&issuer.rules);
        }
        None
    }
}

#[cfg(feature = "jwks")]
impl<'k> Keys<'k> {
    /// Whether any remote set may be asked.
    pub(crate) fn has_remote(self) -> bool {
        !self.remote.is_empty()
    }

    /// The remote sets in the order they were configured, for a (`kid`, `alg`) lookup.
    pub(crate) fn remote(self) -> &'k [crate::jwks::RemoteIssuer] {
        self.remote
    }

    /// A token named a `kid` no set holds: each set fetches again, at most once per
    /// its cooldown. The fetch starts now; see [`pending_fetches`](Self::pending_fetches)
    /// for waiting on it.
    pub(crate) fn refresh_for_unknown_kid(self) {
        for issuer in self.remote {
            drop(issuer.set.refresh_for_unknown_kid());
        }
    }

    /// The fetches asked for by unknown `kid`s that have not finished yet, as one
    /// future (each bounded by its set's fetch timeout), or `None` when there are none.
    pub(crate) fn pending_fetches(self) -> Option<crate::future::KeyWait> {
        let pending: Vec<_> = self
            .remote
            .iter()
            .filter_map(|issuer| issuer.set.pending_demand())
            .collect();
        if pending.is_empty() {
            return None;
        }
        Some(Box::pin(async move {
            for fetch in pending {
                fetch.await;
            }
        }))
    }
}

/// What a token's header selects among the keys.
pub(crate) enum Selected<'k, 'b> {
    /// A configured key.
    Static(&'k VerifyingKey),
    /// No configured key: the header, parsed, for the remote sets to look up.
    Unmatched(#[cfg_attr(not(feature = "jwks"), allow(dead_code))] JoseHeader<'b>),
}

/// The static key for a header that is not a known one: parsed, then matched by its
/// `alg` and `kid`.
fn parsed_key<'k>(keys: &'k [VerifyingKey], header_b64: &[u8]) -> Option<&'k VerifyingKey> {
    let mut header_buf = header::buffer();
    let header = header::parse(header_b64, &mut header_buf).ok()?;
    // The key comes from configuration, matched by the header's alg and kid.
    select(keys, header.alg, header.kid.as_deref())
}

/// The static key for (`alg`, `kid`).
fn select<'k>(
    keys: &'k [VerifyingKey],
    alg: Algorithm,
    kid: Option<&str>,
) -> Option<&'k VerifyingKey> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.alg == alg && k.kid.as_deref() == Some(kid)),
        // Without a `kid`, the first key of that algorithm (the signing key comes first).
        None => keys.iter().find(|k| k.alg == alg),
    }
}
