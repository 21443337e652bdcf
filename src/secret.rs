//! Secrets, below everyone who makes or checks one: random tokens and bytes (session tokens,
//! the socket-token key, generated passwords, password salts), comparison in constant time,
//! and `access.admin_token` — one copy of it, one check. No database, no routing.

use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::header::{HeaderMap, AUTHORIZATION};
use rand::RngCore;
use subtle::ConstantTimeEq;

/// 256 random bits.
pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// 256 random bits, base64url without padding (43 characters).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// Whether two secrets are equal, without an early exit that would time how much of a guess
/// was right (a length mismatch is no secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `access.admin_token`, the interim admin credential: an `Authorization: Bearer` for the
/// API and `/metrics`, a socket param or `authToken` for sockets. One copy shared by every
/// check (cheap to clone), replaced in place when the configuration is reloaded.
#[derive(Clone, Default)]
pub struct AdminToken(
    /// Shared by every holder, so a reload reaches every check at once; empty: off.
    Arc<RwLock<Arc<str>>>,
);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret: never in a log line, not even a debug one.
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The token from the configuration (empty: off).
    pub fn new(token: &str) -> AdminToken {
        AdminToken(Arc::new(RwLock::new(Arc::from(token))))
    }

    /// Take a reloaded value; whether it differs from the one it replaces.
    pub fn replace(&self, token: &str) -> bool {
        let mut current = self.0.write().unwrap_or_else(|e| e.into_inner());
        let changed = **current != *token;
        *current = Arc::from(token);
        changed
    }

    /// Whether `offered` is the admin token; never while none is configured.
    pub fn matches(&self, offered: &str) -> bool {
        let token = Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()));
        !token.is_empty() && constant_time_eq(offered.as_bytes(), token.as_bytes())
    }

    /// Whether the request's `Authorization: Bearer <token>` carries the admin token.
    pub fn in_bearer(&self, headers: &HeaderMap) -> bool {
        headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|offered| self.matches(offered.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn random_tokens_are_256_bits_and_differ() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn an_empty_admin_token_matches_nothing_not_even_empty() {
        let off = AdminToken::new("");
        assert!(!off.matches(""));
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(!off.in_bearer(&headers));
    }

    #[test]
    fn the_admin_token_is_checked_as_bearer_and_follows_a_reload() {
        let token = AdminToken::new("old");
        let seen_by_another = token.clone();
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer  old "));
        assert!(seen_by_another.in_bearer(&headers));
        assert!(token.replace("new"));
        assert!(!token.replace("new"));
        assert!(!seen_by_another.in_bearer(&headers));
        assert!(seen_by_another.matches("new"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic new"));
        assert!(!seen_by_another.in_bearer(&headers));
    }
}
