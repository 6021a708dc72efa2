//! The JOSE header: the only part of a token read before its signature is checked,
//! bounded in size and parsed strictly.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::IgnoredAny;

use base64_simd::Out;

use super::decode_into;
use crate::error::TokenError;

/// A base64url header longer than this is refused before decoding (I5).
const MAX_HEADER_B64: usize = 1024;
/// The size of a buffer that holds any header short enough to be decoded.
const HEADER_BUF: usize = MAX_HEADER_B64 * 3 / 4 + 3;

/// Room for a decoded header, on the caller's stack: the parsed header borrows its
/// `kid` from it.
pub(crate) type HeaderBuf = [MaybeUninit<u8>; HEADER_BUF];

/// An uninitialised [`HeaderBuf`] (nothing to zero: decoding writes what is read).
pub(crate) fn buffer() -> HeaderBuf {
    [MaybeUninit::uninit(); HEADER_BUF]
}

/// The JOSE header fields we read; everything else is ignored, never fetched
/// (`jku`, `x5u`, `jwk` are not trusted, RFC 8725 §3.10). Parsed strictly (RFC 7515
/// §4): `alg` and `kid` must be strings, member names must not repeat, and `crit`,
/// `zip` and `enc` are refused in any form, `null` included.
pub(crate) struct JoseHeader<'a> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Cow<'a, str>>,
    /// A `crit`, `zip` or `enc` member was present.
    unsupported: bool,
}

/// A JSON string, borrowed from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Members a header may have: more is not a header this crate can meet.
const MAX_HEADER_MEMBERS: usize = 32;

impl<'de> Deserialize<'de> for JoseHeader<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JoseHeader<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JOSE header object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JoseHeader<'de>, A::Error> {
                let (mut alg, mut kid, mut unsupported) = (None, None, false);
                let mut seen: Vec<Cow<'de, str>> = Vec::new();
                while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
                    if seen.contains(&name) || seen.len() >= MAX_HEADER_MEMBERS {
                        return Err(A::Error::custom("repeated or too many header members"));
                    }
                    match &*name {
                        "alg" => {
                            let Str(value) = map.next_value::<Str<'de>>()?;
                            // "none", "None", "hs256", "HS256 " all fail here.
                            let parsed = value.parse::<Algorithm>();
                            alg = Some(parsed.map_err(|_| A::Error::custom("unknown alg"))?);
                        }
                        "kid" => kid = Some(map.next_value::<Str<'de>>()?.0),
                        "crit" | "zip" | "enc" => {
                            map.next_value::<IgnoredAny>()?;
                            unsupported = true;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    seen.push(name);
                }
                Ok(JoseHeader {
                    alg: alg.ok_or_else(|| A::Error::missing_field("alg"))?,
                    kid,
                    unsupported,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// Decodes and parses a JOSE header: bounded in size, parsed with serde's recursion
/// limit, strictly (see [`JoseHeader`]).
pub(crate) fn parse<'b>(
    header_b64: &[u8],
    header_buf: &'b mut HeaderBuf,
) -> Result<JoseHeader<'b>, TokenError> {
    if header_b64.len() > MAX_HEADER_B64 {
        return Err(TokenError::Malformed);
    }
    let header_json = decode_into(header_b64, Out::from_uninit_slice(header_buf))?;
    // serde_json skips ignored members without checking their UTF-8, and a derived
    // struct also accepts an array: RFC 7515 §4 wants a UTF-8 JSON object.
    let header_json = std::str::from_utf8(header_json).map_err(|_| TokenError::Malformed)?;
    if !header_json
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(TokenError::Malformed);
    }
    let header: JoseHeader<'_> =
        serde_json::from_str(header_json).map_err(|_| TokenError::Malformed)?;
    if header.unsupported {
        return Err(TokenError::UnsupportedHeader);
    }
    Ok(header)
}
