//! Errors: why a request was rejected, and why a configuration was refused.

use std::fmt;

use http::StatusCode;

/// Why a request was not authenticated.
///
/// Each variant maps onto one RFC 6750 answer (see [`AuthError::status`] and
/// [`AuthError::error_code`]). The rejection response carries this value in its
/// extensions. Descriptions are generic on purpose: they never echo the token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no credentials (or only credentials of another scheme).
    MissingCredentials,
    /// The request itself is malformed: repeated `Authorization`, bad syntax,
    /// two token transports, a repeated auth cookie.
    InvalidRequest(InvalidRequest),
    /// A token was presented and is not acceptable.
    InvalidToken(TokenError),
    /// The token lacks a scope the route requires.
    InsufficientScope,
    /// The route requires a fresh token (issued from a login, not from a refresh).
    NotFresh,
    /// A cookie-authenticated unsafe request failed the CSRF check.
    CsrfFailed,
    /// The revocation store could not answer; the request is refused (fail closed).
    StoreUnavailable,
    /// The keys of a remote key set are not available (not fetched yet, or too
    /// stale): 503, gRPC `UNAVAILABLE`.
    KeysUnavailable,
}

/// What was malformed about the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// More than one `Authorization` header.
    RepeatedAuthorization,
    /// The `Authorization` header is not `Bearer <b64token>`.
    MalformedAuthorization,
    /// Both a bearer header and an auth cookie were sent.
    MultipleCredentials,
    /// The same auth cookie name appears more than once.
    RepeatedCookie,
    /// More cookies than the configured bound.
    TooManyCookies,
}

/// Why a presented token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a compact JWS: wrong segment count, bad base64url, bad JSON, bad bytes.
    Malformed,
    /// Longer than the configured maximum.
    TooLong,
    /// The header names an algorithm (or key id) that is not configured.
    UnsupportedAlgorithm,
    /// The signature does not verify.
    InvalidSignature,
    /// The header carries a `crit` or `zip` parameter this crate does not implement.
    UnsupportedHeader,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// A required claim is missing or has the wrong type.
    InvalidClaims,
    /// An access token where a refresh token is required, or the reverse.
    WrongType,
    /// `iss` is missing or not the configured issuer.
    InvalidIssuer,
    /// `aud` is missing or does not contain the configured audience.
    InvalidAudience,
    /// The token, its family or its subject was revoked.
    Revoked,
    /// A refresh token that was already rotated was presented again; its family is now revoked.
    Reused,
    /// The keys of the token's remote key set are not available (not fetched yet,
    /// or too stale). Becomes [`AuthError::KeysUnavailable`] (503).
    KeysUnavailable,
}

impl TokenError {
    /// A short, generic description safe to send to the client.
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "The token is malformed",
            Self::TooLong => "The token is too long",
            Self::UnsupportedAlgorithm => "The token uses an unsupported algorithm or key",
            Self::InvalidSignature => "The token signature is invalid",
            Self::UnsupportedHeader => "The token uses an unsupported header parameter",
            Self::KeysUnavailable => "The token verification keys are unavailable",
            Self::Expired => "The token expired",
            Self::NotYetValid => "The token is not valid yet",
            Self::IssuedInFuture => "The token was issued in the future",
            Self::InvalidClaims => "The token claims are invalid",
            Self::WrongType => "The token is of the wrong type for this resource",
            Self::InvalidIssuer => "The token issuer is invalid",
            Self::InvalidAudience => "The token audience is invalid",
            Self::Revoked => "The token has been revoked",
            Self::Reused => "The refresh token was already used",
        }
    }
}

impl TokenError {
    /// A stable `snake_case` name (see [`AuthError::reason`]).
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLong => "too_long",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::InvalidSignature => "invalid_signature",
            Self::UnsupportedHeader => "unsupported_header",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::InvalidClaims => "invalid_claims",
            Self::WrongType => "wrong_type",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
            Self::Revoked => "revoked",
            Self::Reused => "reused",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

impl AuthError {
    /// The HTTP status of the rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredentials | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope | Self::NotFresh | Self::CsrfFailed => StatusCode::FORBIDDEN,
            Self::StoreUnavailable | Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 `error` attribute, if any.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials
            | Self::StoreUnavailable
            | Self::KeysUnavailable
            | Self::CsrfFailed => None,
            Self::InvalidRequest(_) => Some("invalid_request"),
            Self::InvalidToken(_) => Some("invalid_token"),
            Self::InsufficientScope | Self::NotFresh => Some("insufficient_scope"),
        }
    }

    /// A short, generic description safe to send to the client.
    pub fn description(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "Authentication required",
            Self::InvalidRequest(r) => match r {
                InvalidRequest::RepeatedAuthorization => "Only one Authorization header is allowed",
                InvalidRequest::MalformedAuthorization => "The Authorization header is malformed",
                InvalidRequest::MultipleCredentials => {
                    "Only one way of sending the token is allowed"
                }
                InvalidRequest::RepeatedCookie => "An authentication cookie is repeated",
                InvalidRequest::TooManyCookies => "Too many cookies",
            },
            Self::InvalidToken(t) => t.description(),
            Self::InsufficientScope => "The token lacks a required scope",
            Self::NotFresh => "A fresh access token is required",
            Self::CsrfFailed => "CSRF token missing or invalid",
            Self::StoreUnavailable => "The revocation store is unavailable",
            Self::KeysUnavailable => "The token verification keys are unavailable",
        }
    }

    /// A stable `snake_case` name for the rejection (the `reason` label of the
    /// [`requests` metric](crate#operations), and a field for logs): the variant, with the
    /// inner reason for [`InvalidRequest`](Self::InvalidRequest) and
    /// [`InvalidToken`](Self::InvalidToken).
    ///
    /// ```
    /// use tower_jwt_auth::{AuthError, TokenError};
    ///
    /// assert_eq!(AuthError::from(TokenError::Expired).reason(), "expired");
    /// assert_eq!(AuthError::CsrfFailed.reason(), "csrf_failed");
    /// ```
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidRequest(r) => match r {
                InvalidRequest::RepeatedAuthorization => "repeated_authorization",
                InvalidRequest::MalformedAuthorization => "malformed_authorization",
                InvalidRequest::MultipleCredentials => "multiple_credentials",
                InvalidRequest::RepeatedCookie => "repeated_cookie",
                InvalidRequest::TooManyCookies => "too_many_cookies",
            },
            Self::InvalidToken(t) => t.reason(),
            Self::InsufficientScope => "insufficient_scope",
            Self::NotFresh => "not_fresh",
            Self::CsrfFailed => "csrf_failed",
            Self::StoreUnavailable => "store_unavailable",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The gRPC status code for the rejection (`16` unauthenticated, `7` permission
    /// denied, `14` unavailable, `3` invalid argument).
    pub fn grpc_code(&self) -> u16 {
        match self {
            Self::MissingCredentials | Self::InvalidToken(_) => 16,
            Self::InvalidRequest(_) => 3,
            Self::InsufficientScope | Self::NotFresh | Self::CsrfFailed => 7,
            Self::StoreUnavailable | Self::KeysUnavailable => 14,
        }
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for AuthError {}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        match e {
            // Not the token's fault: the server cannot verify anything right now.
            TokenError::KeysUnavailable => Self::KeysUnavailable,
            e => Self::InvalidToken(e),
        }
    }
}

impl From<InvalidRequest> for AuthError {
    fn from(e: InvalidRequest) -> Self {
        Self::InvalidRequest(e)
    }
}

/// A configuration that [`JwtAuthBuilder::build`](crate::JwtAuthBuilder::build) refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No signing or verification key was configured.
    NoKey,
    /// An HMAC secret is shorter than the hash output (RFC 7518 §3.2), or empty.
    WeakSecret {
        /// The algorithm the secret was given for.
        algorithm: &'static str,
        /// The minimum length in bytes.
        min_len: usize,
        /// The given length in bytes.
        len: usize,
    },
    /// A PEM key could not be read, or does not fit the algorithm.
    InvalidKey(String),
    /// Two verification keys share the same `kid`, or several keys without `kid`
    /// share an algorithm.
    AmbiguousKeys,
    /// A remote key set's URL or settings cannot be used.
    InvalidKeySource(String),
    /// A cookie name does not satisfy its `__Host-`/`__Secure-` prefix rules
    /// or is not a valid cookie name.
    InvalidCookie(String),
    /// A value is out of range (for example a zero TTL).
    InvalidValue(&'static str),
    /// An environment variable has a value that cannot be used.
    InvalidEnv {
        /// The variable's name.
        name: &'static str,
        /// What is wrong with it (never its value).
        reason: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKey => f.write_str("no signing or verification key configured"),
            Self::WeakSecret {
                algorithm,
                min_len,
                len,
            } => write!(
                f,
                "the {algorithm} secret is {len} bytes; at least {min_len} are required (RFC 7518 §3.2)"
            ),
            Self::InvalidKey(why) => write!(f, "invalid key: {why}"),
            Self::AmbiguousKeys => f.write_str("verification keys must have distinct `kid`s"),
            Self::InvalidKeySource(why) => write!(f, "invalid remote key set: {why}"),
            Self::InvalidCookie(why) => write!(f, "invalid cookie configuration: {why}"),
            Self::InvalidValue(why) => write!(f, "invalid value: {why}"),
            Self::InvalidEnv { name, reason } => write!(f, "{name}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Issuing a token failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum IssueError {
    /// This `JwtAuth` has verification keys only.
    NoSigningKey,
    /// The claims could not be encoded or signed.
    Encode(jsonwebtoken::errors::Error),
    /// [`TokenBuilder::claim`](crate::TokenBuilder::claim) was given a registered
    /// name (`sub`, `exp`, `nbf`, …), which only its own builder method may set.
    RegisteredClaim(String),
    /// [`JwtAuth::reissue_access`](crate::JwtAuth::reissue_access) was given the
    /// claims of a refresh token: an access token comes from a refresh token only
    /// through [`JwtAuth::refresh`](crate::JwtAuth::refresh) (rotation and reuse
    /// detection), and a refresh token only from a login or a rotation.
    NotAnAccessToken,
}

impl fmt::Display for IssueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSigningKey => f.write_str("no signing key configured"),
            Self::Encode(e) => write!(f, "could not sign the token: {e}"),
            Self::RegisteredClaim(name) => write!(
                f,
                "`{name}` is a registered claim: set it with its own builder method, not `.claim`"
            ),
            Self::NotAnAccessToken => f.write_str(
                "only an access token's claims can be re-issued; refresh through `refresh`",
            ),
        }
    }
}

impl std::error::Error for IssueError {}
