//! Metrics of every authentication decision, through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): install any recorder (for example
//! `metrics-exporter-prometheus`) and the layer's counters and histograms appear in it.
//!
//! They are recorded inside the layer, so no order of layers can hide a rejection from
//! them. Every label value is one of a fixed set of static strings: never a subject, a
//! token id or token text. Without a recorder installed, recording costs a thread-local
//! read and allocates nothing.
//!
//! # Names
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | [`tower_jwt_auth_requests_total`](REQUESTS) | counter | `outcome`; `location` (accepted); `reason`, `status` (rejected) |
//! | [`tower_jwt_auth_implicit_refreshes_total`](IMPLICIT_REFRESHES) | counter | `source` |
//! | [`tower_jwt_auth_refreshes_total`](REFRESHES) | counter | `outcome` |
//! | [`tower_jwt_auth_revocations_total`](REVOCATIONS) | counter | `kind` |
//! | [`tower_jwt_auth_store_duration_seconds`](STORE_DURATION) | histogram | `operation` |
//! | [`tower_jwt_auth_store_errors_total`](STORE_ERRORS) | counter | `operation` |
//! | [`tower_jwt_auth_store_ready`](STORE_READY) | gauge | |
//! | [`tower_jwt_auth_store_lag_seconds`](STORE_LAG) | gauge | |
//! | [`tower_jwt_auth_verified_cache_total`](VERIFIED_CACHE) | counter | `result` |
//!
//! # Naming convention
//!
//! Every name starts with `tower_jwt_auth_`, then the component (`store`, `keyset`,
//! `mirror`, …), then what is measured, with the Prometheus unit suffixes: `_total`
//! for counters, `_seconds` for durations and ages (as `f64` seconds), no suffix for
//! 0/1 gauges. Labels are `snake_case` static strings from a closed set. Components
//! added later follow it, for example `tower_jwt_auth_keyset_age_seconds{key_set}`,
//! `tower_jwt_auth_keyset_fetches_total{key_set, outcome}` (where `key_set` is a name
//! from the configuration, never a URL with credentials).

use crate::error::AuthError;
#[cfg(feature = "metrics")]
use crate::error::{InvalidRequest, TokenError};
use crate::extract::Location;

/// `tower_jwt_auth_requests_total` (counter): requests the layer decided on.
///
/// Labels: `outcome` = `accepted` (with `location` = `header`, `cookie` or `query`:
/// where the token was found; a session resumed from the refresh cookie counts as
/// `cookie`), `rejected` (with `reason` = [`AuthError::reason`] and `status` = the
/// HTTP status of the rejection, also for gRPC requests, which carry it as
/// `grpc-status`), or `anonymous` (no credentials on an
/// [`optional`](crate::AuthLayer::optional) route).
#[cfg(feature = "metrics")]
pub const REQUESTS: &str = "tower_jwt_auth_requests_total";

/// `tower_jwt_auth_implicit_refreshes_total` (counter): access cookies the layer set on
/// a response. `source` = `window` (the access cookie was about to expire) or
/// `refresh_cookie` (it had expired or was missing; minted from the refresh cookie).
#[cfg(feature = "metrics")]
pub const IMPLICIT_REFRESHES: &str = "tower_jwt_auth_implicit_refreshes_total";

/// `tower_jwt_auth_refreshes_total` (counter): explicit refreshes
/// ([`JwtAuth::refresh`](crate::JwtAuth::refresh)). `outcome` = `refreshed`, `reused`
/// (an already rotated refresh token was presented: its family is now revoked; the
/// layer usually detects it first, as a rejection with `reason="reused"`),
/// `revoked` (the family had been revoked), `store_unavailable` or `invalid`.
#[cfg(feature = "metrics")]
pub const REFRESHES: &str = "tower_jwt_auth_refreshes_total";

/// `tower_jwt_auth_revocations_total` (counter): revocations recorded in the store by
/// [`JwtAuth::revoke`](crate::JwtAuth::revoke) and
/// [`JwtAuth::revoke_subject`](crate::JwtAuth::revoke_subject). `kind` = `token`,
/// `family` or `subject`.
#[cfg(feature = "metrics")]
pub const REVOCATIONS: &str = "tower_jwt_auth_revocations_total";

/// `tower_jwt_auth_store_duration_seconds` (histogram): time the revocation store took
/// to answer, for stores that do I/O (an in-memory answer is not timed: the clock
/// reads would cost more than the answer). `operation` = `check` (the check of a
/// request's token; a check answered from a local mirror is not timed), `revoke`,
/// `revoke_subject`, `rotate` or `health`.
#[cfg(feature = "metrics")]
pub const STORE_DURATION: &str = "tower_jwt_auth_store_duration_seconds";

/// `tower_jwt_auth_store_errors_total` (counter): revocation store calls that failed
/// or timed out (each failed `check` by the layer is also a 503
/// `store_unavailable` rejection). `operation` as for [`STORE_DURATION`].
#[cfg(feature = "metrics")]
pub const STORE_ERRORS: &str = "tower_jwt_auth_store_errors_total";

/// `tower_jwt_auth_store_ready` (gauge): 1 when the last
/// [`JwtAuth::health`](crate::JwtAuth::health) found the revocation store ready, 0 when
/// not. Set only by readiness checks.
#[cfg(feature = "metrics")]
pub const STORE_READY: &str = "tower_jwt_auth_store_ready";

/// `tower_jwt_auth_store_lag_seconds` (gauge): how far behind its source the
/// revocation store answered at the last [`JwtAuth::health`](crate::JwtAuth::health),
/// for a store that answers from a copy (`RedisStore`'s mirror). Set only by readiness
/// checks that report a lag.
#[cfg(feature = "metrics")]
pub const STORE_LAG: &str = "tower_jwt_auth_store_lag_seconds";

/// `tower_jwt_auth_verified_cache_total` (counter): look-ups in the cache of verified
/// asymmetric tokens. `result` = `hit` or `miss`.
#[cfg(feature = "metrics")]
pub const VERIFIED_CACHE: &str = "tower_jwt_auth_verified_cache_total";

/// Describes every metric to the installed recorder (its help text and unit), for
/// exporters that print them (Prometheus' `# HELP`). Call once, after installing the
/// recorder; recording works without it.
#[cfg(feature = "metrics")]
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "Requests the auth layer accepted or rejected, by outcome, location and reason"
    );
    describe_counter!(
        IMPLICIT_REFRESHES,
        "Access cookies re-issued by the layer, by source"
    );
    describe_counter!(REFRESHES, "Explicit refreshes, by outcome");
    describe_counter!(REVOCATIONS, "Revocations recorded, by kind");
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "Revocation store latency, by operation"
    );
    describe_counter!(
        STORE_ERRORS,
        "Revocation store calls that failed or timed out"
    );
    describe_gauge!(
        STORE_READY,
        "Whether the last readiness check found the revocation store ready"
    );
    describe_gauge!(
        STORE_LAG,
        Unit::Seconds,
        "How far behind its source the revocation store was at the last readiness check"
    );
    describe_counter!(VERIFIED_CACHE, "Verified-token cache look-ups, by result");
}

// Below: the recording functions. Names and labels are written out as literals (the
// constants above are checked against them in the tests) so that `metrics` builds a
// static key, hashed at compile time: no allocation and no hashing per request, with or
// without a recorder. Without the feature they are empty.

macro_rules! rejections {
    ($($pattern:pat => $reason:literal, $status:literal;)*) => {
        /// Counts a rejection by the layer.
        #[inline]
        #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
        pub(crate) fn rejected(error: &AuthError) {
            #[cfg(feature = "metrics")]
            match error {
                $($pattern => metrics::counter!(
                    "tower_jwt_auth_requests_total",
                    "outcome" => "rejected",
                    "reason" => $reason,
                    "status" => $status
                )
                .increment(1),)*
            }
        }

        /// The labels [`rejected`] records: checked against `AuthError` in the tests.
        #[cfg(all(test, feature = "metrics"))]
        fn labels_of(error: &AuthError) -> (&'static str, &'static str) {
            match error {
                $($pattern => ($reason, $status),)*
            }
        }
    };
}

rejections! {
    AuthError::MissingCredentials => "missing_credentials", "401";
    AuthError::InvalidRequest(InvalidRequest::RepeatedAuthorization) => "repeated_authorization", "400";
    AuthError::InvalidRequest(InvalidRequest::MalformedAuthorization) => "malformed_authorization", "400";
    AuthError::InvalidRequest(InvalidRequest::MultipleCredentials) => "multiple_credentials", "400";
    AuthError::InvalidRequest(InvalidRequest::RepeatedCookie) => "repeated_cookie", "400";
    AuthError::InvalidRequest(InvalidRequest::TooManyCookies) => "too_many_cookies", "400";
    AuthError::InvalidToken(TokenError::Malformed) => "malformed", "401";
    AuthError::InvalidToken(TokenError::TooLong) => "too_long", "401";
    AuthError::InvalidToken(TokenError::UnsupportedAlgorithm) => "unsupported_algorithm", "401";
    AuthError::InvalidToken(TokenError::InvalidSignature) => "invalid_signature", "401";
    AuthError::InvalidToken(TokenError::UnsupportedHeader) => "unsupported_header", "401";
    AuthError::InvalidToken(TokenError::Expired) => "expired", "401";
    AuthError::InvalidToken(TokenError::NotYetValid) => "not_yet_valid", "401";
    AuthError::InvalidToken(TokenError::IssuedInFuture) => "issued_in_future", "401";
    AuthError::InvalidToken(TokenError::InvalidClaims) => "invalid_claims", "401";
    AuthError::InvalidToken(TokenError::WrongType) => "wrong_type", "401";
    AuthError::InvalidToken(TokenError::InvalidIssuer) => "invalid_issuer", "401";
    AuthError::InvalidToken(TokenError::InvalidAudience) => "invalid_audience", "401";
    AuthError::InvalidToken(TokenError::Revoked) => "revoked", "401";
    AuthError::InvalidToken(TokenError::Reused) => "reused", "401";
    AuthError::InvalidToken(TokenError::KeysUnavailable) => "keys_unavailable", "401";
    AuthError::InsufficientScope => "insufficient_scope", "403";
    AuthError::NotFresh => "not_fresh", "403";
    AuthError::CsrfFailed => "csrf_failed", "403";
    AuthError::StoreUnavailable => "store_unavailable", "503";
    AuthError::KeysUnavailable => "keys_unavailable", "503";
}

/// Counts a request the layer let through with a verified token found at `location`.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn accepted(location: Location) {
    #[cfg(feature = "metrics")]
    match location {
        Location::Header => {
            metrics::counter!("tower_jwt_auth_requests_total", "outcome" => "accepted", "location" => "header")
                .increment(1)
        }
        Location::Cookie => {
            metrics::counter!("tower_jwt_auth_requests_total", "outcome" => "accepted", "location" => "cookie")
                .increment(1)
        }
        Location::Query => {
            metrics::counter!("tower_jwt_auth_requests_total", "outcome" => "accepted", "location" => "query").increment(1)
        }
    }
}

/// Counts a request without credentials let through by an optional route.
#[inline]
pub(crate) fn anonymous() {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_jwt_auth_requests_total", "outcome" => "anonymous").increment(1);
}

/// Where an implicitly refreshed access cookie came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Implicit {
    /// The access cookie was within the refresh window.
    Window,
    /// The access cookie was expired or missing: minted from the refresh cookie.
    RefreshCookie,
}

/// Counts an access cookie set on a response by implicit refresh.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn implicit_refresh(source: Implicit) {
    #[cfg(feature = "metrics")]
    match source {
        Implicit::Window => {
            metrics::counter!("tower_jwt_auth_implicit_refreshes_total", "source" => "window").increment(1)
        }
        Implicit::RefreshCookie => {
            metrics::counter!("tower_jwt_auth_implicit_refreshes_total", "source" => "refresh_cookie").increment(1)
        }
    }
}

/// Counts the outcome of an explicit refresh.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn explicit_refresh<T>(result: &Result<T, AuthError>) {
    #[cfg(feature = "metrics")]
    match result {
        Ok(_) => metrics::counter!("tower_jwt_auth_refreshes_total", "outcome" => "refreshed")
            .increment(1),
        Err(AuthError::InvalidToken(TokenError::Reused)) => {
            metrics::counter!("tower_jwt_auth_refreshes_total", "outcome" => "reused").increment(1)
        }
        Err(AuthError::InvalidToken(TokenError::Revoked)) => {
            metrics::counter!("tower_jwt_auth_refreshes_total", "outcome" => "revoked").increment(1)
        }
        Err(AuthError::StoreUnavailable) => {
            metrics::counter!("tower_jwt_auth_refreshes_total", "outcome" => "store_unavailable")
                .increment(1)
        }
        Err(_) => {
            metrics::counter!("tower_jwt_auth_refreshes_total", "outcome" => "invalid").increment(1)
        }
    }
}

/// What a revocation applied to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Revoked {
    Token,
    Family,
    Subject,
}

/// Counts a revocation recorded in the store.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn revoked(kind: Revoked) {
    #[cfg(feature = "metrics")]
    match kind {
        Revoked::Token => {
            metrics::counter!("tower_jwt_auth_revocations_total", "kind" => "token").increment(1)
        }
        Revoked::Family => {
            metrics::counter!("tower_jwt_auth_revocations_total", "kind" => "family").increment(1)
        }
        Revoked::Subject => {
            metrics::counter!("tower_jwt_auth_revocations_total", "kind" => "subject").increment(1)
        }
    }
}

/// A revocation-store operation (the `operation` label).
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoreOp {
    Check,
    Revoke,
    RevokeSubject,
    Rotate,
    Health,
}

#[cfg(feature = "metrics")]
macro_rules! by_operation {
    ($op:expr, $macro:ident!($name:literal), $method:ident($($arg:expr)?)) => {
        match $op {
            StoreOp::Check => metrics::$macro!($name, "operation" => "check").$method($($arg)?),
            StoreOp::Revoke => metrics::$macro!($name, "operation" => "revoke").$method($($arg)?),
            StoreOp::RevokeSubject => {
                metrics::$macro!($name, "operation" => "revoke_subject").$method($($arg)?)
            }
            StoreOp::Rotate => metrics::$macro!($name, "operation" => "rotate").$method($($arg)?),
            StoreOp::Health => metrics::$macro!($name, "operation" => "health").$method($($arg)?),
        }
    };
}

/// Records how long a store operation that did I/O took.
#[cfg(feature = "metrics")]
pub(crate) fn store_duration(op: StoreOp, elapsed: std::time::Duration) {
    let seconds = elapsed.as_secs_f64();
    by_operation!(
        op,
        histogram!("tower_jwt_auth_store_duration_seconds"),
        record(seconds)
    );
}

/// Counts a failed store operation.
#[cfg(feature = "metrics")]
pub(crate) fn store_error(op: StoreOp) {
    by_operation!(
        op,
        counter!("tower_jwt_auth_store_errors_total"),
        increment(1)
    );
}

/// Sets the store readiness gauge.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn store_ready(ready: bool) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("tower_jwt_auth_store_ready").set(if ready { 1.0 } else { 0.0 });
}

/// Sets the store lag gauge (for a store that reports one).
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn store_lag(lag: std::time::Duration) {
    #[cfg(feature = "metrics")]
    metrics::gauge!("tower_jwt_auth_store_lag_seconds").set(lag.as_secs_f64());
}

/// Counts a look-up in the verified-token cache.
#[inline]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn verified_cache(hit: bool) {
    #[cfg(feature = "metrics")]
    if hit {
        metrics::counter!("tower_jwt_auth_verified_cache_total", "result" => "hit").increment(1);
    } else {
        metrics::counter!("tower_jwt_auth_verified_cache_total", "result" => "miss").increment(1);
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    #[test]
    fn rejection_labels_match_the_error() {
        let errors = [
            AuthError::MissingCredentials,
            InvalidRequest::RepeatedAuthorization.into(),
            InvalidRequest::MalformedAuthorization.into(),
            InvalidRequest::MultipleCredentials.into(),
            InvalidRequest::RepeatedCookie.into(),
            InvalidRequest::TooManyCookies.into(),
            TokenError::Malformed.into(),
            TokenError::TooLong.into(),
            TokenError::UnsupportedAlgorithm.into(),
            TokenError::InvalidSignature.into(),
            TokenError::UnsupportedHeader.into(),
            TokenError::Expired.into(),
            TokenError::NotYetValid.into(),
            TokenError::IssuedInFuture.into(),
            TokenError::InvalidClaims.into(),
            TokenError::WrongType.into(),
            TokenError::InvalidIssuer.into(),
            TokenError::InvalidAudience.into(),
            TokenError::Revoked.into(),
            TokenError::Reused.into(),
            AuthError::InsufficientScope,
            AuthError::NotFresh,
            AuthError::CsrfFailed,
            AuthError::StoreUnavailable,
            TokenError::KeysUnavailable.into(),
        ];
        let mut reasons = std::collections::HashSet::new();
        for e in &errors {
            assert_eq!(labels_of(e), (e.reason(), e.status().as_str()), "{e:?}");
            assert!(reasons.insert(e.reason()), "{e:?}: reason not unique");
        }
    }

    /// Every recording function writes under the name of its public constant.
    #[test]
    fn recorded_names_are_the_documented_ones() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            rejected(&AuthError::MissingCredentials);
            accepted(Location::Header);
            anonymous();
            implicit_refresh(Implicit::Window);
            explicit_refresh::<()>(&Ok(()));
            revoked(Revoked::Token);
            store_duration(StoreOp::Check, std::time::Duration::from_millis(1));
            store_error(StoreOp::Rotate);
            store_ready(true);
            store_lag(std::time::Duration::from_millis(3));
            verified_cache(true);
        });
        let text = handle.render();
        for name in [
            REQUESTS,
            IMPLICIT_REFRESHES,
            REFRESHES,
            REVOCATIONS,
            STORE_DURATION,
            STORE_ERRORS,
            STORE_READY,
            STORE_LAG,
            VERIFIED_CACHE,
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} not recorded:\n{text}"
            );
        }
    }
}
