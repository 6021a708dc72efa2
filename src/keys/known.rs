//! Known headers: the encoded JOSE headers that tokens signed with the static keys
//! carry, recognised by comparison on the request path instead of being decoded
//! and parsed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{VerifyingKey, alg_name};

/// The encoded headers worth recognising without parsing: `jsonwebtoken`'s field
/// order and PyJWT/AuthX's, for every key, each with the index of the key that
/// `select` (the normal header path) picks for it; a header it refuses is left out.
pub(super) fn headers(
    keys: &[VerifyingKey],
    select: impl Fn(&[u8]) -> Option<usize>,
) -> Vec<(Vec<u8>, usize)> {
    let mut out: Vec<(Vec<u8>, usize)> = Vec::new();
    for key in keys {
        let alg = alg_name(key.alg);
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
            if let Some(index) = select(&encoded)
                && !out.iter().any(|(h, _)| *h == encoded)
            {
                out.push((encoded, index));
            }
        }
    }
    out
}
