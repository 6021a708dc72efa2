//! Configuration from AuthX's `JWT_*` environment variables.

use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily};

use crate::auth::{ImplicitRefresh, JwtAuth, JwtAuthBuilder};
use crate::cookies::CookieSameSite;
use crate::error::ConfigError;
use crate::extract::Location;
use crate::keys::Key;

fn bad(name: &'static str, reason: &'static str) -> ConfigError {
    ConfigError::InvalidEnv { name, reason }
}

fn var(name: &'static str) -> Result<Option<String>, ConfigError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(bad(name, "not valid UTF-8")),
    }
}

fn seconds(name: &'static str) -> Result<Option<Duration>, ConfigError> {
    var(name)?
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| bad(name, "expected a whole number of seconds"))
        })
        .transpose()
}

fn boolean(name: &'static str) -> Result<Option<bool>, ConfigError> {
    var(name)?
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(bad(name, "expected true or false")),
        })
        .transpose()
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    // Accepts `headers,cookies` as well as AuthX's `["headers", "cookies"]`.
    v.split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| s.trim_matches(|c| matches!(c, '[' | ']' | '"' | '\'')))
        .filter(|s| !s.is_empty())
}

impl JwtAuthBuilder {
    /// Reads AuthX's `JWT_*` variables on top of the defaults, so a service can run
    /// beside an AuthX service with the same settings. Unset variables keep their
    /// defaults; a bad value is an error naming the variable (never echoing it).
    ///
    /// | variable | meaning |
    /// | --- | --- |
    /// | `JWT_SECRET_KEY` | HMAC secret (at least 32 bytes for HS256) |
    /// | `JWT_ALGORITHM` | `HS256` (default), `HS384`, `HS512`, `RS256`, `ES256`, `EdDSA`, … |
    /// | `JWT_PRIVATE_KEY`, `JWT_PUBLIC_KEY` | PEM keys for asymmetric algorithms |
    /// | `JWT_ACCESS_TOKEN_EXPIRES`, `JWT_REFRESH_TOKEN_EXPIRES` | lifetimes, seconds |
    /// | `JWT_DECODE_LEEWAY` | clock skew, seconds |
    /// | `JWT_TOKEN_LOCATION` | `headers`, `cookies`, `query` (WebSocket upgrades only) |
    /// | `JWT_QUERY_STRING_NAME` | the query parameter (default `token`) |
    /// | `JWT_ACCESS_COOKIE_NAME`, `JWT_REFRESH_COOKIE_NAME`, `JWT_ACCESS_CSRF_COOKIE_NAME`, `JWT_REFRESH_CSRF_COOKIE_NAME` | cookie names |
    /// | `JWT_COOKIE_SECURE` | `false` for plain-http local development only |
    /// | `JWT_COOKIE_SAMESITE` | `lax`, `strict`, `none` |
    /// | `JWT_COOKIE_DOMAIN`, `JWT_COOKIE_MAX_AGE` | cookie attributes |
    /// | `JWT_COOKIE_CSRF_PROTECT` | CSRF double submit on or off |
    /// | `JWT_ACCESS_CSRF_HEADER_NAME` | CSRF header (default `X-CSRF-TOKEN`) |
    /// | `JWT_IMPLICIT_REFRESH_DELTATIME` | implicit refresh window, seconds |
    /// | `JWT_ENCODE_ISSUER` / `JWT_DECODE_ISSUER` | issuer written / required |
    /// | `JWT_ENCODE_AUDIENCE` / `JWT_DECODE_AUDIENCE` | audience written / required |
    pub fn from_env(self) -> Result<Self, ConfigError> {
        let mut b = self;
        let alg = match var("JWT_ALGORITHM")? {
            None => Algorithm::HS256,
            Some(a) => a
                .trim()
                .parse::<Algorithm>()
                .map_err(|_| bad("JWT_ALGORITHM", "unknown algorithm"))?,
        };
        if alg.family() == AlgorithmFamily::Hmac {
            if let Some(secret) = var("JWT_SECRET_KEY")? {
                b = b.signing_key(Key::hmac(alg, secret));
            }
        } else {
            b = match (var("JWT_PRIVATE_KEY")?, var("JWT_PUBLIC_KEY")?) {
                // Tokens carry the key's RFC 7638 thumbprint as `kid`, the id
                // `JwtAuth::jwks` publishes it under.
                (Some(private), public) => {
                    let key = match public {
                        Some(public) => Key::pem_pair(alg, private, public),
                        // The public half is derived from the private one.
                        None => Key::private_pem(alg, private),
                    };
                    match key.thumbprint() {
                        Some(kid) => b.signing_key(key.kid(kid)),
                        None => b.signing_key(key),
                    }
                }
                (None, Some(public)) => b.verification_key(Key::public_pem(alg, public)),
                (None, None) => {
                    return Err(bad(
                        "JWT_PRIVATE_KEY",
                        "JWT_PRIVATE_KEY (or JWT_PUBLIC_KEY to verify only) is required for asymmetric algorithms",
                    ));
                }
            };
        }
        if let Some(d) = seconds("JWT_ACCESS_TOKEN_EXPIRES")? {
            b = b.access_ttl(d);
        }
        if let Some(d) = seconds("JWT_REFRESH_TOKEN_EXPIRES")? {
            b = b.refresh_ttl(d);
        }
        if let Some(d) = seconds("JWT_DECODE_LEEWAY")? {
            b = b.leeway(d);
        }
        if let Some(v) = var("JWT_TOKEN_LOCATION")? {
            let mut locations = Vec::new();
            for item in list(&v) {
                locations.push(match item.to_ascii_lowercase().as_str() {
                    "headers" | "header" => Location::Header,
                    "cookies" | "cookie" => Location::Cookie,
                    "query" | "query_string" => Location::Query,
                    _ => {
                        return Err(bad(
                            "JWT_TOKEN_LOCATION",
                            "expected headers, cookies and/or query",
                        ));
                    }
                });
            }
            b = b.locations(locations);
        }
        if let Some(v) = var("JWT_QUERY_STRING_NAME")? {
            b = b.query_parameter(v);
        }
        let mut names = b.cookie_names_ref().clone();
        let mut renamed = false;
        for (var_name, slot) in [
            ("JWT_ACCESS_COOKIE_NAME", &mut names.access),
            ("JWT_REFRESH_COOKIE_NAME", &mut names.refresh),
            ("JWT_ACCESS_CSRF_COOKIE_NAME", &mut names.csrf_access),
            ("JWT_REFRESH_CSRF_COOKIE_NAME", &mut names.csrf_refresh),
        ] {
            if let Some(v) = var(var_name)? {
                *slot = v;
                renamed = true;
            }
        }
        if renamed {
            b = b.cookie_names(names);
        }
        if boolean("JWT_COOKIE_SECURE")? == Some(false) {
            b = b.insecure_cookies_for_local_development();
        }
        if let Some(v) = var("JWT_COOKIE_SAMESITE")? {
            b = b.cookie_same_site(match v.trim().to_ascii_lowercase().as_str() {
                "lax" => CookieSameSite::Lax,
                "strict" => CookieSameSite::Strict,
                "none" => CookieSameSite::None,
                _ => return Err(bad("JWT_COOKIE_SAMESITE", "expected lax, strict or none")),
            });
        }
        if let Some(v) = var("JWT_COOKIE_DOMAIN")? {
            b = b.cookie_domain(v);
        }
        if let Some(d) = seconds("JWT_COOKIE_MAX_AGE")? {
            b = b.cookie_max_age(d);
        }
        if let Some(on) = boolean("JWT_COOKIE_CSRF_PROTECT")? {
            b = b.csrf_protection(on);
        }
        if let Some(v) = var("JWT_ACCESS_CSRF_HEADER_NAME")? {
            let name = HeaderName::try_from(v.trim())
                .map_err(|_| bad("JWT_ACCESS_CSRF_HEADER_NAME", "not a header name"))?;
            b = b.csrf_header(name);
        }
        if let Some(d) = seconds("JWT_IMPLICIT_REFRESH_DELTATIME")? {
            b = b.implicit_refresh(ImplicitRefresh::window(d));
        }
        if let Some(v) = var("JWT_ENCODE_ISSUER")?.or(var("JWT_DECODE_ISSUER")?) {
            b = b.issuer(v);
        }
        if let Some(v) = var("JWT_ENCODE_AUDIENCE")?.or(var("JWT_DECODE_AUDIENCE")?) {
            b = b.audience(v);
        }
        Ok(b)
    }
}

impl JwtAuth {
    /// `JwtAuth::builder().from_env()?.build()`: everything from `JWT_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        JwtAuth::builder().from_env()?.build()
    }
}
