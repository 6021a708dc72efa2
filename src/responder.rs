//! Turning an [`AuthError`] into a response.

use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::error::AuthError;

/// Whether the rejected request was plain HTTP or gRPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// Any HTTP request.
    Http,
    /// A request with `content-type: application/grpc…`.
    Grpc,
    /// A gRPC-Web request (`application/grpc-web…`); `text` for the base64 variant.
    GrpcWeb {
        /// `application/grpc-web-text…`.
        text: bool,
    },
}

impl Protocol {
    /// Whether the request is gRPC or gRPC-Web (no cookies set, statuses in headers).
    pub fn is_grpc(self) -> bool {
        !matches!(self, Self::Http)
    }

    pub(crate) fn of(content_type: Option<&[u8]>) -> Self {
        match content_type {
            Some(t) if t.starts_with(b"application/grpc-web-text") => Self::GrpcWeb { text: true },
            Some(t) if t.starts_with(b"application/grpc-web") => Self::GrpcWeb { text: false },
            Some(t) if t.starts_with(b"application/grpc") => Self::Grpc,
            _ => Self::Http,
        }
    }
}

/// Builds the response for a rejected request.
///
/// The layer adds the [`AuthError`] to the response extensions afterwards, whatever
/// the responder. Closures `Fn(&AuthError, Protocol) -> Response<B>` are responders.
///
/// ```
/// use http::{Response, StatusCode};
/// use tower_jwt_auth::{AuthError, Protocol, Responder};
///
/// let teapot = |_: &AuthError, _: Protocol| {
///     Response::builder().status(StatusCode::IM_A_TEAPOT).body(String::new()).unwrap()
/// };
/// let r = teapot.respond(&AuthError::MissingCredentials, Protocol::Http);
/// assert_eq!(r.status(), StatusCode::IM_A_TEAPOT);
/// ```
pub trait Responder<B> {
    /// The response for `error`.
    fn respond(&self, error: &AuthError, protocol: Protocol) -> Response<B>;
}

impl<B, F> Responder<B> for F
where
    F: Fn(&AuthError, Protocol) -> Response<B>,
{
    fn respond(&self, error: &AuthError, protocol: Protocol) -> Response<B> {
        self(error, protocol)
    }
}

/// RFC 6750 challenges with an empty body; gRPC requests get HTTP 200 with
/// `grpc-status` and `grpc-message` (a trailers-only response).
#[derive(Clone, Debug, Default)]
pub struct BearerResponder {
    realm: Option<HeaderValue>,
}

impl BearerResponder {
    pub(crate) fn with_realm(realm: Option<&str>) -> Self {
        Self {
            realm: realm.and_then(|r| HeaderValue::from_str(r).ok()),
        }
    }

    fn challenge(&self, error: &AuthError) -> Option<HeaderValue> {
        let mut v = String::from("Bearer");
        let mut sep = " ";
        if let Some(realm) = self.realm.as_ref().and_then(|r| r.to_str().ok()) {
            v.push_str(&format!(" realm=\"{realm}\""));
            sep = ", ";
        }
        if let Some(code) = error.error_code() {
            v.push_str(&format!(
                "{sep}error=\"{code}\", error_description=\"{}\"",
                error.description()
            ));
        }
        HeaderValue::from_str(&v).ok()
    }
}

impl<B: Default> Responder<B> for BearerResponder {
    fn respond(&self, error: &AuthError, protocol: Protocol) -> Response<B> {
        let mut res = Response::new(B::default());
        if protocol.is_grpc() {
            // A trailers-only answer; gRPC-Web clients expect their own content type.
            let content_type = match protocol {
                Protocol::GrpcWeb { text: true } => "application/grpc-web-text",
                Protocol::GrpcWeb { text: false } => "application/grpc-web",
                _ => "application/grpc",
            };
            let headers = res.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            headers.insert("grpc-status", HeaderValue::from(error.grpc_code()));
            headers.insert(
                "grpc-message",
                HeaderValue::from_static(grpc_message(error)),
            );
            return res;
        }
        *res.status_mut() = error.status();
        if matches!(
            error.status(),
            StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN
        ) && !matches!(error, AuthError::CsrfFailed)
            && let Some(v) = self.challenge(error)
        {
            res.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        res
    }
}

/// gRPC messages are percent-encoded; these are plain ASCII without `%`.
fn grpc_message(error: &AuthError) -> &'static str {
    error.description()
}

/// Like [`BearerResponder`], with a JSON body
/// `{"error": "...", "error_description": "..."}` for HTTP requests.
#[derive(Clone, Debug, Default)]
pub struct JsonResponder {
    bearer: BearerResponder,
}

impl<B: Default + From<String>> Responder<B> for JsonResponder {
    fn respond(&self, error: &AuthError, protocol: Protocol) -> Response<B> {
        let mut res: Response<B> = self.bearer.respond(error, protocol);
        if protocol == Protocol::Http {
            let body = serde_json::json!({
                "error": error.error_code().unwrap_or(match error {
                    AuthError::CsrfFailed => "csrf_failed",
                    AuthError::StoreUnavailable | AuthError::KeysUnavailable => {
                        "temporarily_unavailable"
                    }
                    _ => "unauthorized",
                }),
                "error_description": error.description(),
            });
            *res.body_mut() = B::from(body.to_string());
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{InvalidRequest, TokenError};

    fn www(e: AuthError) -> (StatusCode, Option<String>) {
        let r: Response<String> = BearerResponder::default().respond(&e, Protocol::Http);
        let h = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status(), h)
    }

    #[test]
    fn rfc6750_challenges() {
        assert_eq!(
            www(AuthError::MissingCredentials),
            (StatusCode::UNAUTHORIZED, Some("Bearer".into()))
        );
        let (s, h) = www(TokenError::Expired.into());
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            h.unwrap(),
            r#"Bearer error="invalid_token", error_description="The token expired""#
        );
        let (s, h) = www(InvalidRequest::RepeatedAuthorization.into());
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(h.unwrap().contains(r#"error="invalid_request""#));
        let (s, h) = www(AuthError::InsufficientScope);
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(h.unwrap().contains(r#"error="insufficient_scope""#));
        assert_eq!(www(AuthError::CsrfFailed), (StatusCode::FORBIDDEN, None));
        assert_eq!(
            www(AuthError::StoreUnavailable),
            (StatusCode::SERVICE_UNAVAILABLE, None)
        );
    }

    #[test]
    fn realm_comes_first() {
        let r: Response<String> = BearerResponder::with_realm(Some("api"))
            .respond(&TokenError::Revoked.into(), Protocol::Http);
        assert!(
            r.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with(r#"Bearer realm="api", error="invalid_token""#)
        );
    }

    #[test]
    fn grpc_trailers_only() {
        let r: Response<String> =
            BearerResponder::default().respond(&AuthError::InsufficientScope, Protocol::Grpc);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "7");
        assert!(r.body().is_empty());
    }

    #[test]
    fn grpc_web_gets_its_own_content_type() {
        for (request, answer) in [
            ("application/grpc+proto", "application/grpc"),
            ("application/grpc-web+proto", "application/grpc-web"),
            ("application/grpc-web-text", "application/grpc-web-text"),
        ] {
            let protocol = Protocol::of(Some(request.as_bytes()));
            assert!(protocol.is_grpc());
            let r: Response<String> =
                BearerResponder::default().respond(&AuthError::MissingCredentials, protocol);
            assert_eq!(r.headers()[CONTENT_TYPE], answer);
            assert_eq!(r.headers()["grpc-status"], "16");
        }
        assert_eq!(Protocol::of(Some(b"application/json")), Protocol::Http);
        assert_eq!(Protocol::of(None), Protocol::Http);
    }
}
