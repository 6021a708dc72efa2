//! Tokens of identity providers (feature `jwks`): verified with the key their
//! header names in a remote set, under that set's claims rules.

use std::sync::Arc;

use super::header::JoseHeader;
use super::{Checked, MAX_SIGNATURE, Parts, Verifier, with_decoded};
use crate::claims::TokenPayload;
use crate::error::TokenError;
use crate::jwks::Miss;

impl Verifier<'_> {
    /// Verifies a token (its header already parsed) with the key that header names in
    /// a remote set, then its
    /// claims with that set's rules (its issuer, its audience). An unknown `kid`
    /// asks the sets for a refresh (at most once per cooldown) and is refused here;
    /// the layer and the async API then wait for that fetch and verify again.
    /// Valid remote tokens are cached like the others, tied to the key that verified
    /// them (see [`Keys::rules_of`](crate::keys::Keys::rules_of)).
    pub(super) fn verify_remote(
        &self,
        token: &[u8],
        header: &JoseHeader<'_>,
        parts: Parts<'_>,
        now: u64,
    ) -> Result<Checked, TokenError> {
        let (header_b64, payload_b64, signature_b64) = parts;
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
        for issuer in self.keys.remote() {
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
                        // From what the signature covers, never from the signature:
                        // an ECDSA signature can be rewritten and still verify.
                        payload.jti = crate::jwks::token_id(signing_input);
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
        // A set without keys might have verified the token: fail closed as unavailable
        // (503) rather than call a token bad (401) that its own issuer's keys, not
        // loaded yet, would accept.
        if unknown && (unavailable || refused.is_none()) {
            self.keys.refresh_for_unknown_kid();
        }
        if unavailable {
            return Err(TokenError::KeysUnavailable);
        }
        Err(refused.unwrap_or(TokenError::UnsupportedAlgorithm))
    }
}

fn parse_foreign_claims(json: &[u8]) -> Result<TokenPayload, TokenError> {
    match serde_json::from_slice::<crate::claims::ForeignPayload>(json) {
        Ok(payload) => Ok(payload.0),
        Err(e) if e.is_data() => Err(TokenError::InvalidClaims),
        Err(_) => Err(TokenError::Malformed),
    }
}
