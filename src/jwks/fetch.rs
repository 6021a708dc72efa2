//! The HTTP side of a remote key set: one bounded GET, and OpenID Connect discovery.
//!
//! hyper-util's client with rustls on AWS-LC (the crypto this crate already builds),
//! Mozilla's roots from `webpki-roots`: no OpenSSL, no system store to configure.
//! The client follows no redirects (it has no such feature), and every answer but a
//! `200` with a body of at most the configured size is an error.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a fetch failed. Only ever logged (never shown to clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchError {
    /// Not `https`, and not a loopback host either.
    Insecure,
    /// The URL does not parse or names no host.
    BadUrl,
    /// Connection or protocol failure.
    Transport,
    /// The whole fetch took longer than the timeout.
    Timeout,
    /// Any status but 200 (redirects included: they are never followed).
    Status(u16),
    /// The body is larger than the limit.
    TooLarge,
    /// The body is not the JSON document expected.
    Malformed,
    /// The discovery document names another issuer.
    IssuerMismatch,
    /// The set has more keys than the limit.
    TooManyKeys,
    /// The set holds no usable signature key.
    NoUsableKey,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Insecure => f.write_str("not https (only loopback hosts may use http)"),
            Self::BadUrl => f.write_str("invalid URL"),
            Self::Transport => f.write_str("connection failed"),
            Self::Timeout => f.write_str("timed out"),
            Self::Status(s) => write!(f, "answered {s}"),
            Self::TooLarge => f.write_str("response too large"),
            Self::Malformed => f.write_str("malformed document"),
            Self::IssuerMismatch => f.write_str("discovery document names another issuer"),
            Self::TooManyKeys => f.write_str("too many keys"),
            Self::NoUsableKey => f.write_str("no usable signature key"),
        }
    }
}

/// Checks that `url` may be fetched: `https`, or `http` to a loopback host only.
pub(crate) fn check_url(url: &str) -> Result<Uri, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::BadUrl)?;
    let host = uri.host().ok_or(FetchError::BadUrl)?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(FetchError::Insecure),
        _ => Err(FetchError::BadUrl),
    }
}

/// The `jwks_uri` a discovery document names: an https issuer's keys come over
/// https too (no plain-http loopback downgrade); a loopback http issuer (local
/// development) may name a loopback http URL. Any host: providers serve keys from a
/// CDN or another domain of theirs, and the document naming it came from the issuer
/// itself.
pub(crate) fn check_jwks_uri(issuer: &str, jwks_uri: &str) -> Result<Uri, FetchError> {
    let uri = check_url(jwks_uri)?;
    if issuer.starts_with("https:") && uri.scheme_str() != Some("https") {
        return Err(FetchError::Insecure);
    }
    Ok(uri)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A successful GET: the body and the `Cache-Control: max-age`, if any.
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    pub(crate) max_age: Option<Duration>,
}

/// The HTTP client of one key set.
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    max_bytes: usize,
}

impl Fetcher {
    pub(crate) fn new(max_bytes: usize) -> Result<Self, String> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // `https_or_http`: plain http is refused by `check_url` before any connection,
        // except to loopback hosts (tests, sidecars).
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { client, max_bytes })
    }

    /// One GET of `url`, bounded in size (the caller bounds it in time).
    pub(crate) async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        let uri = check_url(url)?;
        let req = Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|_| FetchError::BadUrl)?;
        let res = self
            .client
            .request(req)
            .await
            .map_err(|_| FetchError::Transport)?;
        if res.status() != StatusCode::OK {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        let announced = res
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|len| len > self.max_bytes as u64) {
            return Err(FetchError::TooLarge);
        }
        let max_age = res
            .headers()
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(max_age);
        let body = Limited::new(res.into_body(), self.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge
                } else {
                    FetchError::Transport
                }
            })?
            .to_bytes();
        Ok(Fetched { body, max_age })
    }

    /// OpenID Connect discovery: the `jwks_uri` of `issuer`, whose document must
    /// name exactly that issuer (OpenID Connect Discovery 1.0 §4.3).
    pub(crate) async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let fetched = self.get(&url).await?;
        let doc: Discovery =
            serde_json::from_slice(&fetched.body).map_err(|_| FetchError::Malformed)?;
        if doc.issuer != issuer {
            return Err(FetchError::IssuerMismatch);
        }
        check_jwks_uri(issuer, &doc.jwks_uri)?;
        Ok(doc.jwks_uri)
    }
}

/// The `max-age` of one `Cache-Control` value (`no-store`/`no-cache` count as 0).
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        let (name, secs) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        secs.trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback() {
        assert!(check_url("https://idp.example.com/jwks").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://localhost/jwks").is_ok());
        assert!(check_url("http://[::1]:9/jwks").is_ok());
        assert_eq!(
            check_url("http://idp.example.com/jwks").unwrap_err(),
            FetchError::Insecure
        );
        assert_eq!(
            check_url("http://127.0.0.1.nip.io/jwks").unwrap_err(),
            FetchError::Insecure
        );
        assert!(check_url("ftp://idp.example.com/jwks").is_err());
        assert!(check_url("/jwks").is_err());
    }

    /// SECURITY.md 13.6 (review R6).
    #[test]
    fn an_https_issuer_names_an_https_jwks_uri() {
        let https = "https://idp.example.com";
        assert!(check_jwks_uri(https, "https://keys.example.net/jwks").is_ok());
        for downgrade in ["http://127.0.0.1:8080/jwks", "http://localhost/jwks"] {
            assert_eq!(
                check_jwks_uri(https, downgrade).unwrap_err(),
                FetchError::Insecure
            );
        }
        assert!(check_jwks_uri("http://127.0.0.1:9", "http://127.0.0.1:9/jwks").is_ok());
        assert_eq!(
            check_jwks_uri("http://127.0.0.1:9", "http://idp.example.com/jwks").unwrap_err(),
            FetchError::Insecure
        );
    }

    #[test]
    fn reads_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=x"), None);
    }
}
