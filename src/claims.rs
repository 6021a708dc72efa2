//! The claims of a token, in AuthX's layout.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The kind of a token: access tokens open resources, refresh tokens mint access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// A short-lived token for resources.
    Access,
    /// A long-lived token accepted only by refresh routes.
    Refresh,
}

impl TokenType {
    /// The value of the `type` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TokenType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TokenType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TokenType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""access" or "refresh""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TokenType, E> {
                // A positive match only: an unknown type is not "not refresh" (RFC 8725 §3.12).
                match v {
                    "access" => Ok(TokenType::Access),
                    "refresh" => Ok(TokenType::Refresh),
                    _ => Err(E::custom("unknown token type")),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// The verified claims of a token, as issued by this crate or by AuthX.
///
/// Registered claims are fields; every other top-level claim is kept in
/// [`extra`](Self::extra). Parsing rejects duplicate keys (RFC 7519 §4), numeric
/// dates that are not non-negative numbers (AuthX writes `exp` as a float, which is
/// accepted), and unknown `type` values.
///
/// ```
/// use tower_jwt_auth::{TokenPayload, TokenType};
///
/// let claims: TokenPayload = serde_json::from_str(
///     r#"{"sub":"alice","jti":"1","type":"access","fresh":false,"csrf":"",
///         "iat":1700000000,"exp":1795627160.299861,"tenant":"t1"}"#,
/// ).unwrap();
/// assert_eq!(claims.token_type, TokenType::Access);
/// assert_eq!(claims.exp, 1795627160);
/// assert_eq!(claims.extra["tenant"], "t1");
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
// `repr(C)` keeps `tail` last (see `CacheLinePad`).
#[repr(C)]
pub struct TokenPayload {
    /// Subject: who the token is about.
    pub sub: String,
    /// Unique token id (uuid4), the handle for revocation.
    pub jti: String,
    /// Access or refresh.
    pub token_type: TokenType,
    /// Whether the access token came straight from a login (not from a refresh).
    pub fresh: bool,
    /// The CSRF value bound to this token (empty when CSRF is off).
    pub csrf: Option<String>,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Not before, seconds since the epoch.
    pub nbf: Option<u64>,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// Issuer.
    pub iss: Option<String>,
    /// Audiences (one or several).
    pub aud: Option<Vec<String>>,
    /// Scopes granted to the token.
    pub scopes: Option<Vec<String>>,
    /// Refresh family id, kept across rotations (on both tokens of a pair).
    pub family: Option<String>,
    /// When the session began (the login), kept across refreshes; bounds the
    /// session's absolute lifetime (see `JwtAuthBuilder::max_session_lifetime`).
    pub auth_time: Option<u64>,
    /// Every other top-level claim.
    pub extra: Map<String, Value>,
    pub(crate) tail: CacheLinePad,
}

/// A cache line of nothing after the claims. Every request presenting a cached token
/// counts a reference at the start of its claims' allocation; without this, the end of
/// the claims allocated just before (often another token's, read by another core on
/// each of its hits) could share that line, and two cores hitting two tokens would
/// contend (`benches/verify.rs`, 2 threads against 1). Padding rather than
/// `repr(align(64))`: an over-aligned allocation costs more on first sight.
#[derive(Clone, Copy, Default, PartialEq)]
pub(crate) struct CacheLinePad([u64; 8]);

impl fmt::Debug for TokenPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPayload")
            .field("sub", &self.sub)
            .field("jti", &self.jti)
            .field("token_type", &self.token_type)
            .field("fresh", &self.fresh)
            .field("csrf", &self.csrf)
            .field("iat", &self.iat)
            .field("nbf", &self.nbf)
            .field("exp", &self.exp)
            .field("iss", &self.iss)
            .field("aud", &self.aud)
            .field("scopes", &self.scopes)
            .field("family", &self.family)
            .field("auth_time", &self.auth_time)
            .field("extra", &self.extra)
            .finish()
    }
}

impl TokenPayload {
    /// Whether the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .as_deref()
            .is_some_and(|s| s.iter().any(|x| x == scope))
    }

    /// When the session this token belongs to began: `auth_time`, or for a token
    /// without one (AuthX's) its own `iat`, the latest the session can have begun.
    pub fn session_start(&self) -> u64 {
        self.auth_time.unwrap_or(self.iat)
    }

    /// A custom claim deserialized as `T`, if present and of that type.
    pub fn claim<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.extra.get(name).and_then(|v| T::deserialize(v).ok())
    }
}

impl Serialize for TokenPayload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Reissue {
            base: self,
            auth_time: self.auth_time,
            jti: &self.jti,
            iat: self.iat,
            nbf: self.nbf,
            exp: self.exp,
            fresh: self.fresh,
        }
        .serialize(s)
    }
}

/// The claims of `base` with another `jti`, `iat`, `nbf`, `exp` and `fresh`: what
/// implicit refresh signs, without cloning the claims.
pub(crate) struct Reissue<'a> {
    pub(crate) base: &'a TokenPayload,
    pub(crate) auth_time: Option<u64>,
    pub(crate) jti: &'a str,
    pub(crate) iat: u64,
    pub(crate) nbf: Option<u64>,
    pub(crate) exp: u64,
    pub(crate) fresh: bool,
}

impl Serialize for Reissue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.base;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("sub", &p.sub)?;
        m.serialize_entry("jti", self.jti)?;
        m.serialize_entry("type", &p.token_type)?;
        // Refresh tokens of this crate carry no `fresh`; one parsed with `fresh: true`
        // keeps it, so serializing never changes what was verified.
        if p.token_type == TokenType::Access || self.fresh {
            m.serialize_entry("fresh", &self.fresh)?;
        }
        if let Some(csrf) = &p.csrf {
            m.serialize_entry("csrf", csrf)?;
        }
        m.serialize_entry("iat", &self.iat)?;
        if let Some(nbf) = self.nbf {
            m.serialize_entry("nbf", &nbf)?;
        }
        m.serialize_entry("exp", &self.exp)?;
        if let Some(iss) = &p.iss {
            m.serialize_entry("iss", iss)?;
        }
        match p.aud.as_deref() {
            Some([one]) => m.serialize_entry("aud", one)?,
            Some(many) => m.serialize_entry("aud", many)?,
            None => {}
        }
        if let Some(scopes) = &p.scopes {
            m.serialize_entry("scopes", scopes)?;
        }
        if let Some(family) = &p.family {
            m.serialize_entry("fam", family)?;
        }
        if let Some(auth_time) = self.auth_time {
            m.serialize_entry("auth_time", &auth_time)?;
        }
        for (k, v) in &p.extra {
            if !is_registered(k) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

// Registered names in `extra` are skipped on output so a token never carries a key twice.
const REGISTERED: [&str; 13] = [
    "sub",
    "jti",
    "type",
    "fresh",
    "csrf",
    "iat",
    "nbf",
    "exp",
    "iss",
    "aud",
    "scopes",
    "fam",
    "auth_time",
];

pub(crate) fn is_registered(k: &str) -> bool {
    REGISTERED.contains(&k)
}

enum Field {
    Sub,
    Jti,
    Type,
    Fresh,
    Csrf,
    Iat,
    Nbf,
    Exp,
    Iss,
    Aud,
    Scopes,
    Family,
    AuthTime,
    Other(String),
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "sub" => Field::Sub,
                    "jti" => Field::Jti,
                    "type" => Field::Type,
                    "fresh" => Field::Fresh,
                    "csrf" => Field::Csrf,
                    "iat" => Field::Iat,
                    "nbf" => Field::Nbf,
                    "exp" => Field::Exp,
                    "iss" => Field::Iss,
                    "aud" => Field::Aud,
                    "scopes" => Field::Scopes,
                    "fam" => Field::Family,
                    "auth_time" => Field::AuthTime,
                    other => Field::Other(other.to_owned()),
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A NumericDate (RFC 7519 §2): a non-negative integer or finite float, rounded
/// like `jsonwebtoken` does. Strings, null, booleans and negatives are refused.
struct NumericDate(u64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                u64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::custom("negative NumericDate"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && v >= 0.0 && v < u64::MAX as f64 {
                    // In range by the check above; `as` saturates anyway.
                    Ok(NumericDate(v.round() as u64))
                } else {
                    Err(E::custom("NumericDate out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
struct Audience(Vec<String>);

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience, E> {
                Ok(Audience(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Audience, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Audience(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn set<T, E: de::Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(name));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de> Deserialize<'de> for TokenPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PayloadVisitor { foreign: false })
    }
}

/// The claims of a token another issuer signed (an identity provider's): no `type`,
/// `fresh` or `csrf` of this crate. It is an access token; `jti` and `iat` are
/// optional (an empty `jti` is replaced by the verifier); scopes come from `scope`
/// (space-separated) or `scp` (string or array) when `scopes` is absent; a `type`
/// claim is kept in `extra`, never read as this crate's token type.
#[cfg(feature = "jwks")]
pub(crate) struct ForeignPayload(pub(crate) TokenPayload);

#[cfg(feature = "jwks")]
impl<'de> Deserialize<'de> for ForeignPayload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PayloadVisitor { foreign: true })
            .map(ForeignPayload)
    }
}

#[cfg(feature = "jwks")]
fn foreign_scopes(extra: &Map<String, Value>) -> Option<Vec<String>> {
    let split = |s: &str| s.split_ascii_whitespace().map(str::to_owned).collect();
    match extra.get("scope").or_else(|| extra.get("scp"))? {
        Value::String(s) => Some(split(s)),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

struct PayloadVisitor {
    foreign: bool,
}

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = TokenPayload;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenPayload, A::Error> {
        let (mut sub, mut jti, mut ty, mut fresh, mut csrf) = (None, None, None, None, None);
        let (mut iat, mut nbf, mut exp) = (None, None, None);
        let (mut iss, mut aud, mut scopes, mut family) = (None, None, None, None);
        let mut auth_time = None;
        let mut extra = Map::new();
        while let Some(key) = map.next_key::<Field>()? {
            // A provider's `type`/`fresh`/`csrf` mean nothing here: kept as
            // extra claims, never read as this crate's.
            let key = match key {
                Field::Type if self.foreign => Field::Other("type".into()),
                Field::Fresh if self.foreign => Field::Other("fresh".into()),
                Field::Csrf if self.foreign => Field::Other("csrf".into()),
                key => key,
            };
            match key {
                Field::Sub => set(&mut sub, map.next_value::<String>()?, "sub")?,
                Field::Jti => set(&mut jti, map.next_value::<String>()?, "jti")?,
                Field::Type => set(&mut ty, map.next_value::<TokenType>()?, "type")?,
                Field::Fresh => set(&mut fresh, map.next_value::<bool>()?, "fresh")?,
                Field::Csrf => set(&mut csrf, map.next_value::<String>()?, "csrf")?,
                Field::Iat => set(&mut iat, map.next_value::<NumericDate>()?.0, "iat")?,
                Field::Nbf => set(&mut nbf, map.next_value::<NumericDate>()?.0, "nbf")?,
                Field::Exp => set(&mut exp, map.next_value::<NumericDate>()?.0, "exp")?,
                Field::Iss => set(&mut iss, map.next_value::<String>()?, "iss")?,
                Field::Aud => set(&mut aud, map.next_value::<Audience>()?.0, "aud")?,
                Field::Scopes => set(&mut scopes, map.next_value::<Vec<String>>()?, "scopes")?,
                Field::Family => set(&mut family, map.next_value::<String>()?, "fam")?,
                Field::AuthTime => set(
                    &mut auth_time,
                    map.next_value::<NumericDate>()?.0,
                    "auth_time",
                )?,
                Field::Other(name) => {
                    let value = map.next_value::<Value>()?;
                    if extra.insert(name, value).is_some() {
                        return Err(de::Error::custom("duplicate claim"));
                    }
                }
            }
        }
        // Revocation keys are built from these: an empty id would be shared by
        // every token that has one.
        if self.foreign {
            // The verifier gives a token without `jti` one of its own.
            jti = Some(jti.unwrap_or_default());
            ty = Some(TokenType::Access);
            iat = Some(iat.unwrap_or(0));
            #[cfg(feature = "jwks")]
            if scopes.is_none() {
                scopes = foreign_scopes(&extra);
            }
        }
        let jti: String = jti.ok_or_else(|| de::Error::missing_field("jti"))?;
        if (jti.is_empty() && !self.foreign) || family.as_ref().is_some_and(String::is_empty) {
            return Err(de::Error::custom("empty jti or fam"));
        }
        Ok(TokenPayload {
            sub: sub.ok_or_else(|| de::Error::missing_field("sub"))?,
            jti,
            token_type: ty.ok_or_else(|| de::Error::missing_field("type"))?,
            fresh: fresh.unwrap_or(false),
            csrf,
            iat: iat.ok_or_else(|| de::Error::missing_field("iat"))?,
            nbf,
            exp: exp.ok_or_else(|| de::Error::missing_field("exp"))?,
            iss,
            aud,
            scopes,
            family,
            auth_time,
            extra,
            tail: CacheLinePad::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<TokenPayload, serde_json::Error> {
        serde_json::from_str(json)
    }

    const BASE: &str = r#""sub":"a","jti":"j","type":"access","iat":1"#;

    #[test]
    fn numeric_dates_accept_integers_and_floats_only() {
        assert_eq!(parse(&format!("{{{BASE},\"exp\":10}}")).unwrap().exp, 10);
        assert_eq!(parse(&format!("{{{BASE},\"exp\":10.6}}")).unwrap().exp, 11);
        for bad in [
            "\"10\"", "null", "true", "[10]", "-1", "-0.5", "1e400", "{}",
        ] {
            assert!(
                parse(&format!("{{{BASE},\"exp\":{bad}}}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        assert!(parse(&format!("{{{BASE},\"exp\":10,\"exp\":20}}")).is_err());
        assert!(parse(&format!("{{{BASE},\"exp\":10,\"type\":\"refresh\"}}")).is_err());
        assert!(parse(&format!("{{{BASE},\"exp\":10,\"x\":1,\"x\":2}}")).is_err());
    }

    #[test]
    fn empty_ids_are_refused() {
        assert!(parse(r#"{"sub":"a","jti":"","type":"access","iat":1,"exp":2}"#).is_err());
        assert!(parse(&format!("{{{BASE},\"exp\":2,\"fam\":\"\"}}")).is_err());
        assert!(parse(&format!("{{{BASE},\"exp\":2,\"fam\":\"f\"}}")).is_ok());
    }

    #[test]
    fn type_must_be_known() {
        let j = r#"{"sub":"a","jti":"j","iat":1,"exp":2,"type":"id"}"#;
        assert!(parse(j).is_err());
        let j = r#"{"sub":"a","jti":"j","iat":1,"exp":2}"#;
        assert!(parse(j).is_err());
    }

    #[test]
    fn round_trips_with_custom_claims() {
        let j = r#"{"sub":"a","jti":"j","type":"access","fresh":true,"csrf":"c","iat":1,"exp":2,"aud":["x","y"],"scopes":["r"],"tenant":{"id":1}}"#;
        let p = parse(j).unwrap();
        let again = parse(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(p, again);
        assert!(p.has_scope("r"));
        assert_eq!(p.claim::<serde_json::Value>("tenant").unwrap()["id"], 1);
    }

    /// Found by the `claims` fuzz target: a refresh token's `fresh: true` was dropped
    /// by serializing, so a round trip changed the claims.
    #[test]
    fn a_fresh_refresh_token_round_trips() {
        let j = r#"{"sub":"a","jti":"j","type":"refresh","fresh":true,"csrf":"c","iat":1,"exp":2}"#;
        let p = parse(j).unwrap();
        assert_eq!(parse(&serde_json::to_string(&p).unwrap()).unwrap(), p);
        let own = r#"{"sub":"a","jti":"j","type":"refresh","csrf":"c","iat":1,"exp":2}"#;
        let json = serde_json::to_string(&parse(own).unwrap()).unwrap();
        assert!(!json.contains(r#""fresh""#), "{json}");
    }
}
