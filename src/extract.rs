//! Finding the token in a request: the `Authorization` header (RFC 6750 §2.1) and
//! the `Cookie` header. Both are scanned in place, with bounds, without copying.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};

use crate::error::{AuthError, InvalidRequest};

/// Where a token may be carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Location {
    /// `Authorization: Bearer <token>`.
    Header,
    /// The access (or refresh) cookie.
    Cookie,
    /// A query parameter, read **only** on WebSocket upgrade requests (browsers cannot
    /// set headers there). Off by default: URLs end up in logs and histories
    /// (RFC 6750 §5.3).
    Query,
}

/// A token as found in the request: where it came from and its raw text. Read it from
/// [`Authenticated::token`](crate::Authenticated::token). Its `Debug` output leaves the
/// token out.
#[derive(Clone)]
pub struct PresentedToken {
    location: Location,
    value: HeaderValue,
    start: usize,
    end: usize,
}

impl PresentedToken {
    pub(crate) fn new(location: Location, value: HeaderValue, start: usize, end: usize) -> Self {
        Self {
            location,
            value,
            start,
            end,
        }
    }

    pub(crate) fn minted(token: &str) -> Option<Self> {
        let value = HeaderValue::from_str(token).ok()?;
        Some(Self::new(Location::Cookie, value, 0, token.len()))
    }

    /// Where the token came from.
    pub fn location(&self) -> Location {
        self.location
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.value
            .as_bytes()
            .get(self.start..self.end)
            .unwrap_or_default()
    }

    /// The compact JWT. Treat it as a secret: never log it.
    pub fn as_str(&self) -> &str {
        // Only verified tokens reach handlers, and those are ASCII; "" is for the rest.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl std::fmt::Debug for PresentedToken {
    // The token is a credential: keep it out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedToken")
            .field("location", &self.location)
            .field("len", &self.end.saturating_sub(self.start))
            .finish_non_exhaustive()
    }
}

/// RFC 6750 `b64token` characters, plus `=` padding at the end (checked later by the
/// strict base64url decoder, which refuses it).
///
/// Only needed once verification failed, to tell a malformed request (400) from a bad
/// token (401): a token that verifies is made of base64url parts and dots.
pub(crate) fn is_b64token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        })
}

/// The bearer token in the `Authorization` header, if any.
///
/// - none, or another scheme: `Ok(None)` (a 401 without error code, RFC 6750 §3.1);
/// - two headers, a bad separator, junk after the token: 400 `invalid_request`.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<Option<PresentedToken>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InvalidRequest::RepeatedAuthorization.into());
    }
    let bytes = value.as_bytes();
    let malformed = || AuthError::from(InvalidRequest::MalformedAuthorization);
    const SCHEME: &[u8] = b"bearer";
    let is_bearer = bytes
        .get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME));
    if !is_bearer {
        // A bare token with no scheme is a malformed request; another scheme is not ours.
        let has_space = bytes.contains(&b' ');
        return if !has_space && bytes.contains(&b'.') {
            Err(malformed())
        } else {
            Ok(None)
        };
    }
    let rest = bytes.get(SCHEME.len()..).unwrap_or_default();
    let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    if rest.is_empty() {
        // "Bearer" alone.
        return Err(malformed());
    }
    if token_start == 0 {
        // "Bearerx…" is another scheme; "Bearer\t…" is a bad separator.
        return if rest.first().is_some_and(|&b| b == b'\t') {
            Err(malformed())
        } else {
            Ok(None)
        };
    }
    let token = rest.get(token_start..).unwrap_or_default();
    // Trailing junk or a second token ("Bearer a b") is not scanned for here: a space
    // fails verification, and `is_b64token` then answers 400 like any other bad byte.
    if token.is_empty() {
        return Err(malformed());
    }
    let start = SCHEME.len() + token_start;
    Ok(Some(PresentedToken::new(
        Location::Header,
        value.clone(),
        start,
        bytes.len(),
    )))
}

/// The cookies this crate reads from one request.
#[derive(Default)]
pub(crate) struct FoundCookies {
    pub(crate) access: Option<PresentedToken>,
    pub(crate) refresh: Option<PresentedToken>,
}

/// Scans every `Cookie` header for the access and refresh cookies. A name that
/// appears twice is refused (cookie tossing, SECURITY.md 7.5); so is a header with
/// more than `max_pairs` cookies.
pub(crate) fn cookies(
    headers: &HeaderMap,
    access_name: &str,
    refresh_name: &str,
    max_pairs: usize,
) -> Result<FoundCookies, AuthError> {
    let mut found = FoundCookies::default();
    let mut pairs = 0usize;
    for value in headers.get_all(COOKIE) {
        let bytes = value.as_bytes();
        // Pair boundaries by memchr: cookie headers are long, and mostly not ours.
        let ends = memchr::memchr_iter(b';', bytes).chain(std::iter::once(bytes.len()));
        let mut next_start = 0usize;
        for end in ends {
            let pair_start = std::mem::replace(&mut next_start, end + 1);
            let pair = bytes.get(pair_start..end).unwrap_or_default();
            pairs += 1;
            if pairs > max_pairs {
                return Err(InvalidRequest::TooManyCookies.into());
            }
            let lead = pair.iter().take_while(|&&b| b == b' ').count();
            let pair = pair.get(lead..).unwrap_or_default();
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let name = pair.get(..eq).unwrap_or_default();
            let slot = if name == access_name.as_bytes() {
                &mut found.access
            } else if name == refresh_name.as_bytes() {
                &mut found.refresh
            } else {
                continue;
            };
            if slot.is_some() {
                return Err(InvalidRequest::RepeatedCookie.into());
            }
            let raw = pair.get(eq + 1..).unwrap_or_default();
            let trail = raw.iter().rev().take_while(|&&b| b == b' ').count();
            let start = pair_start + lead + eq + 1;
            let end = start + raw.len() - trail;
            *slot = Some(PresentedToken::new(
                Location::Cookie,
                value.clone(),
                start,
                end,
            ));
        }
    }
    Ok(found)
}

/// Whether the request asks for a WebSocket upgrade (`Upgrade: websocket`).
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The token in query parameter `name`. A repeated parameter is a malformed request.
pub(crate) fn query(query: &str, name: &str) -> Result<Option<PresentedToken>, AuthError> {
    let mut found = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != name {
            continue;
        }
        if found.is_some() {
            return Err(InvalidRequest::MalformedAuthorization.into());
        }
        // Compact JWTs are URL-safe: a value that needs decoding is not one of ours
        // and fails verification as it is.
        let value = HeaderValue::from_str(value)
            .map_err(|_| AuthError::from(InvalidRequest::MalformedAuthorization))?;
        let len = value.len();
        found = Some(PresentedToken::new(Location::Query, value, 0, len));
    }
    Ok(found)
}

/// The value of a request header, trimmed, if present once.
pub(crate) fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &http::HeaderName,
) -> Option<&'h [u8]> {
    let mut it = headers.get_all(name).iter();
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    Some(v.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    fn token_of(values: &[&[u8]]) -> Result<Option<String>, AuthError> {
        bearer(&auth(values)).map(|t| t.map(|t| t.as_str().to_owned()))
    }

    #[test]
    fn bearer_syntax() {
        assert_eq!(token_of(&[b"Bearer a.b.c"]).unwrap().unwrap(), "a.b.c");
        assert_eq!(token_of(&[b"bEaReR a.b.c"]).unwrap().unwrap(), "a.b.c");
        assert_eq!(token_of(&[b"Bearer   a.b.c"]).unwrap().unwrap(), "a.b.c");
        assert_eq!(token_of(&[]).unwrap(), None);
        assert_eq!(token_of(&[b"Basic dXNlcjpwYXNz"]).unwrap(), None);
        assert_eq!(token_of(&[b"Bearerish x"]).unwrap(), None);
        let bad = AuthError::InvalidRequest(InvalidRequest::MalformedAuthorization);
        for v in [&b"Bearer"[..], b"Bearer ", b"Bearer\ta.b.c", b"a.b.c"] {
            assert_eq!(token_of(&[v]).unwrap_err(), bad, "{v:?}");
        }
        // Found, but not b64token: answered 400 once verification fails.
        for v in [
            &b"Bearer a.b.c,d.e.f"[..],
            b"Bearer a.b.c x",
            b"Bearer a.b.c\xff",
            b"Bearer \"a.b.c\"",
        ] {
            let h = auth(&[v]);
            let t = bearer(&h).unwrap().unwrap();
            assert!(!is_b64token(t.as_bytes()), "{v:?}");
        }
        assert!(is_b64token(b"eyJ0.eyJ1_-.c2ln"));
        assert_eq!(
            token_of(&[b"Bearer a.b.c", b"Bearer a.b.c"]).unwrap_err(),
            AuthError::InvalidRequest(InvalidRequest::RepeatedAuthorization)
        );
    }

    #[test]
    fn cookie_scan() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; acc=x.y.z ;ref=r.s.t"),
        );
        let found = cookies(&h, "acc", "ref", 10).unwrap();
        assert_eq!(found.access.unwrap().as_str(), "x.y.z");
        assert_eq!(found.refresh.unwrap().as_str(), "r.s.t");

        h.append(COOKIE, HeaderValue::from_static("acc=other"));
        assert!(
            cookies(&h, "acc", "ref", 10).is_err(),
            "repeated name across headers"
        );

        let many = (0..1000)
            .map(|i| format!("c{i}=v"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_str(&many).unwrap());
        assert_eq!(
            cookies(&h, "acc", "ref", 100).err(),
            Some(AuthError::InvalidRequest(InvalidRequest::TooManyCookies))
        );
    }
}
