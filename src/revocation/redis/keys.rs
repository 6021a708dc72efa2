//! The key layout. Every key of one subject carries the same hash tag, so each script
//! touches a single slot of a Redis Cluster; the log stream has a slot of its own.
//!
//! | key | value |
//! | --- | --- |
//! | `<prefix>{<tag>}:jti:<jti>` | until (seconds): the token is revoked |
//! | `<prefix>{<tag>}:famrev:<family>` | until: the refresh family is revoked |
//! | `<prefix>{<tag>}:fam:<family>` | hash: usable refresh `jti` → `0` (current) or grace deadline |
//! | `<prefix>{<tag>}:sub:<sub>` | hash `b` (tokens issued at or before are revoked), `u` (until) |
//! | `<prefix>log` | stream: every revocation, for the instances' mirrors |
//!
//! `<tag>` is 16 hex digits of a stable 64-bit hash of the subject: a fixed-length tag
//! keeps a subject's text (which may hold `{`, `}` or `:`) out of the hash-tag syntax,
//! and makes every key parse back unambiguously. Every key has a TTL.

use std::fmt::Write;

/// What a key under a subject's tag holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Token,
    FamilyRevoked,
    Family,
    Subject,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Token => "jti",
            Self::FamilyRevoked => "famrev",
            Self::Family => "fam",
            Self::Subject => "sub",
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
}

/// FNV-1a: tiny, stable across versions and platforms (the std hasher promises
/// neither), and only spreads subjects over slots: nothing relies on it for security.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Keys {
    pub(super) fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub(super) fn key(&self, kind: Kind, sub: &str, id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 28 + id.len());
        key.push_str(&self.prefix);
        // Writing to a String cannot fail.
        let _ = write!(key, "{{{:016x}}}:{}:{id}", fnv1a(sub), kind.name());
        key
    }

    pub(super) fn log(&self) -> String {
        format!("{}log", self.prefix)
    }

    /// The `SCAN` pattern of every key under a subject's tag.
    pub(super) fn pattern(&self) -> String {
        let mut pattern = String::new();
        // Glob-special characters of the prefix are escaped.
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str("{*");
        pattern
    }

    /// The kind and id of a key this layout built.
    pub(super) fn parse<'k>(&self, key: &'k str) -> Option<(Kind, &'k str)> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix('{')?;
        let rest = rest.get(16..)?.strip_prefix("}:")?;
        let (kind, id) = rest.split_once(':')?;
        let kind = match kind {
            "jti" => Kind::Token,
            "famrev" => Kind::FamilyRevoked,
            "fam" => Kind::Family,
            "sub" => Kind::Subject,
            _ => return None,
        };
        Some((kind, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_subjects_tag_and_parse_back() {
        let keys = Keys::new("tower-jwt-auth:");
        let sub = "we{ird}:sub";
        let jti = keys.key(Kind::Token, sub, "a:b");
        let fam = keys.key(Kind::Family, sub, "f");
        let tag = |k: &str| {
            k.split_once('{')
                .unwrap()
                .1
                .split_once('}')
                .unwrap()
                .0
                .to_owned()
        };
        assert_eq!(tag(&jti), tag(&fam));
        assert_eq!(tag(&jti).len(), 16);
        assert_eq!(keys.parse(&jti), Some((Kind::Token, "a:b")));
        let s = keys.key(Kind::Subject, sub, sub);
        assert_eq!(keys.parse(&s), Some((Kind::Subject, sub)));
        assert_eq!(keys.parse("tower-jwt-auth:log"), None);
        assert_eq!(keys.parse("other:{0123456789abcdef}:jti:x"), None);
        assert_ne!(
            tag(&keys.key(Kind::Token, "alice", "x")),
            tag(&keys.key(Kind::Token, "bob", "x"))
        );
        assert_eq!(Keys::new("a*b:").pattern(), "a\\*b:{*");
    }
}
