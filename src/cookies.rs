//! Cookie names and attributes, and writing `Set-Cookie` headers.

use cookie::{Cookie, SameSite};
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue};

use crate::error::ConfigError;

/// The names of the four cookies.
///
/// The default names carry the `__Host-` prefix: the browser only accepts them with
/// `Secure`, `Path=/` and no `Domain`, so a sibling subdomain cannot plant or shadow
/// them (RFC 6265bis §4.1.3).
///
/// ```
/// use tower_jwt_auth::CookieNames;
///
/// assert_eq!(CookieNames::default().access, "__Host-access_token");
/// assert_eq!(CookieNames::authx().access, "access_token_cookie");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CookieNames {
    /// The access-token cookie (`HttpOnly`).
    pub access: String,
    /// The refresh-token cookie (`HttpOnly`).
    pub refresh: String,
    /// The CSRF cookie for the access token (readable by scripts).
    pub csrf_access: String,
    /// The CSRF cookie for the refresh token (readable by scripts).
    pub csrf_refresh: String,
}

impl Default for CookieNames {
    fn default() -> Self {
        Self {
            access: "__Host-access_token".into(),
            refresh: "__Host-refresh_token".into(),
            csrf_access: "__Host-csrf_access_token".into(),
            csrf_refresh: "__Host-csrf_refresh_token".into(),
        }
    }
}

impl CookieNames {
    /// AuthX's and flask-jwt-extended's names, to share cookies with such a service.
    pub fn authx() -> Self {
        Self {
            access: "access_token_cookie".into(),
            refresh: "refresh_token_cookie".into(),
            csrf_access: "csrf_access_token".into(),
            csrf_refresh: "csrf_refresh_token".into(),
        }
    }

    /// Custom names.
    pub fn new(
        access: impl Into<String>,
        refresh: impl Into<String>,
        csrf_access: impl Into<String>,
        csrf_refresh: impl Into<String>,
    ) -> Self {
        Self {
            access: access.into(),
            refresh: refresh.into(),
            csrf_access: csrf_access.into(),
            csrf_refresh: csrf_refresh.into(),
        }
    }

    fn all(&self) -> [&str; 4] {
        [
            &self.access,
            &self.refresh,
            &self.csrf_access,
            &self.csrf_refresh,
        ]
    }
}

/// The `SameSite` attribute of the token cookies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CookieSameSite {
    /// Sent on top-level navigations from other sites, not on their subrequests.
    #[default]
    Lax,
    /// Never sent from other sites.
    Strict,
    /// Always sent (requires `Secure`); CSRF protection is then the only defence.
    None,
}

#[derive(Clone, Debug)]
pub(crate) struct CookieSettings {
    pub(crate) names: CookieNames,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) same_site: CookieSameSite,
    pub(crate) secure: bool,
    /// `Max-Age` of every cookie, in seconds; `None` for session cookies.
    pub(crate) max_age: Option<u64>,
    /// `"<access name>="` and the attributes after the value, rendered once by the
    /// `cookie` crate, for the cookie implicit refresh sets on responses.
    access_parts: (String, String),
}

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            names: CookieNames::default(),
            path: "/".into(),
            domain: None,
            same_site: CookieSameSite::Lax,
            secure: true,
            max_age: None,
            access_parts: (String::new(), String::new()),
        }
    }
}

impl CookieSettings {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for name in self.names.all() {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            if !valid {
                return Err(ConfigError::InvalidCookie(format!(
                    "`{name}` is not a cookie name"
                )));
            }
            let prefixed_host = name.starts_with("__Host-");
            let prefixed_secure = prefixed_host || name.starts_with("__Secure-");
            if prefixed_secure && !self.secure {
                return Err(ConfigError::InvalidCookie(format!(
                    "`{name}` needs the Secure attribute; use unprefixed names for plain-http development"
                )));
            }
            if prefixed_host && (self.path != "/" || self.domain.is_some()) {
                return Err(ConfigError::InvalidCookie(format!(
                    "`{name}` requires Path=/ and no Domain"
                )));
            }
        }
        if self.same_site == CookieSameSite::None && !self.secure {
            return Err(ConfigError::InvalidCookie(
                "SameSite=None requires Secure".into(),
            ));
        }
        Ok(())
    }

    /// Renders the access cookie's attributes once (after the settings are final).
    pub(crate) fn prepare(&mut self) {
        let rendered = self.build(&self.names.access, "", true).to_string();
        let prefix = format!("{}=", self.names.access);
        let suffix = rendered
            .strip_prefix(&prefix)
            .unwrap_or_default()
            .to_owned();
        self.access_parts = (prefix, suffix);
    }

    /// `Set-Cookie` for an access token, from the attributes rendered at build time.
    pub(crate) fn access_header(&self, token: &str) -> Option<HeaderValue> {
        let (prefix, suffix) = &self.access_parts;
        if prefix.is_empty() {
            return self.header(&self.names.access, token, true);
        }
        let mut v = String::with_capacity(prefix.len() + token.len() + suffix.len());
        v.push_str(prefix);
        v.push_str(token);
        v.push_str(suffix);
        HeaderValue::try_from(v).ok()
    }

    fn build<'c>(&self, name: &'c str, value: &'c str, http_only: bool) -> Cookie<'c> {
        let mut c = Cookie::new(name, value);
        c.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            c.set_domain(domain.clone());
        }
        c.set_secure(self.secure);
        c.set_http_only(http_only);
        c.set_same_site(match self.same_site {
            CookieSameSite::Lax => SameSite::Lax,
            CookieSameSite::Strict => SameSite::Strict,
            CookieSameSite::None => SameSite::None,
        });
        if let Some(age) = self.max_age {
            let secs = i64::try_from(age).unwrap_or(i64::MAX);
            c.set_max_age(cookie::time::Duration::seconds(secs));
        }
        c
    }

    pub(crate) fn header(&self, name: &str, value: &str, http_only: bool) -> Option<HeaderValue> {
        HeaderValue::from_str(&self.build(name, value, http_only).to_string()).ok()
    }

    fn removal(&self, name: &str, http_only: bool) -> Option<HeaderValue> {
        let mut c = self.build(name, "", http_only);
        c.make_removal();
        HeaderValue::from_str(&c.to_string()).ok()
    }

    /// Appends the access cookie and its CSRF cookie.
    pub(crate) fn append_access(&self, headers: &mut HeaderMap, token: &str, csrf: Option<&str>) {
        let n = &self.names;
        self.append_pair(headers, (&n.access, token), (&n.csrf_access, csrf));
    }

    /// Appends the refresh cookie and its CSRF cookie.
    pub(crate) fn append_refresh(&self, headers: &mut HeaderMap, token: &str, csrf: Option<&str>) {
        let n = &self.names;
        self.append_pair(headers, (&n.refresh, token), (&n.csrf_refresh, csrf));
    }

    /// A token cookie (`HttpOnly`) and, when there is a CSRF value, its CSRF cookie
    /// (readable by scripts).
    fn append_pair(
        &self,
        headers: &mut HeaderMap,
        token: (&str, &str),
        csrf: (&str, Option<&str>),
    ) {
        if let Some(v) = self.header(token.0, token.1, true) {
            headers.append(SET_COOKIE, v);
        }
        if let Some(value) = csrf.1.filter(|c| !c.is_empty())
            && let Some(v) = self.header(csrf.0, value, false)
        {
            headers.append(SET_COOKIE, v);
        }
    }

    /// Appends removals (`Max-Age=0`, same name, path and domain) of all four cookies.
    pub(crate) fn append_removals(&self, headers: &mut HeaderMap) {
        let names = &self.names;
        for (name, http_only) in [
            (&names.access, true),
            (&names.refresh, true),
            (&names.csrf_access, false),
            (&names.csrf_refresh, false),
        ] {
            if let Some(v) = self.removal(name, http_only) {
                headers.append(SET_COOKIE, v);
            }
        }
    }

    /// Whether a response already sets (or clears) the access cookie: the handler
    /// logged the user out or issued tokens itself, so implicit refresh stays away.
    pub(crate) fn response_sets_access(&self, headers: &HeaderMap) -> bool {
        let name = self.names.access.as_bytes();
        headers.get_all(SET_COOKIE).iter().any(|v| {
            let b = v.as_bytes();
            b.len() > name.len() && b.starts_with(name) && b.get(name.len()) == Some(&b'=')
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cookies_are_hardened_by_default() {
        let s = CookieSettings::default();
        s.validate().unwrap();
        let mut h = HeaderMap::new();
        s.append_access(&mut h, "a.b.c", Some("csrf1"));
        let all: Vec<_> = h
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(all.len(), 2);
        assert!(all[0].starts_with("__Host-access_token=a.b.c"));
        for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
            assert!(all[0].contains(attr), "{attr} in {}", all[0]);
        }
        assert!(!all[0].contains("Domain"));
        assert!(all[1].starts_with("__Host-csrf_access_token=csrf1"));
        assert!(!all[1].contains("HttpOnly"));
    }

    #[test]
    fn prepared_access_header_matches_the_cookie_crate() {
        for mut s in [
            CookieSettings::default(),
            CookieSettings {
                names: CookieNames::authx(),
                secure: false,
                same_site: CookieSameSite::Strict,
                max_age: Some(3600),
                domain: Some("example.com".into()),
                path: "/app".into(),
                ..CookieSettings::default()
            },
        ] {
            s.prepare();
            let fast = s.access_header("a.b.c").unwrap();
            let slow = s.header(&s.names.access, "a.b.c", true).unwrap();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn removal_matches_and_expires() {
        let s = CookieSettings::default();
        let mut h = HeaderMap::new();
        s.append_removals(&mut h);
        let all: Vec<_> = h
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(all.len(), 4);
        assert!(
            all.iter()
                .all(|c| c.contains("Max-Age=0") && c.contains("Path=/"))
        );
        assert!(s.response_sets_access(&h));
    }

    #[test]
    fn prefixed_names_need_secure() {
        let s = CookieSettings {
            secure: false,
            ..CookieSettings::default()
        };
        assert!(s.validate().is_err());
        let s = CookieSettings {
            secure: false,
            names: CookieNames::authx(),
            ..CookieSettings::default()
        };
        s.validate().unwrap();
        let s = CookieSettings {
            path: "/api".into(),
            ..CookieSettings::default()
        };
        assert!(s.validate().is_err());
    }
}
