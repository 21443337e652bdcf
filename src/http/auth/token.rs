//! The secrets a browser holds, and nothing else: session tokens (random, only their SHA-256
//! is stored), the session cookie, and signed socket tokens. Pure functions; no database.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use hyper::header::{HeaderMap, COOKIE};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::config::SameSite;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "kaffediem_session";

/// Domain separation for the socket-token MAC, so the secret signs nothing else by accident.
const SOCKET_TOKEN_CONTEXT: &[u8] = b"kaffediem socket token v1\n";

type HmacSha256 = Hmac<Sha256>;

/// What the `session` table keeps of a session token: lowercase hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session token in the request's `Cookie` headers, if any (the first non-empty one).
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE_NAME && !value.is_empty())
        .map(|(_, value)| value.trim_matches('"'))
}

/// Cookie attributes from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieAttrs {
    pub same_site: SameSite,
    pub secure: bool,
}

/// `Set-Cookie` value that stores `token` for `max_age_seconds`.
pub fn set_cookie(token: &str, max_age_seconds: u64, attrs: CookieAttrs) -> String {
    let same_site = match attrs.same_site {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
        SameSite::None => "None",
    };
    let secure = if attrs.secure { "; Secure" } else { "" };
    format!(
        "{COOKIE_NAME}={token}; HttpOnly; Path=/; SameSite={same_site}{secure}; Max-Age={max_age_seconds}"
    )
}

/// `Set-Cookie` value that makes the browser forget the session cookie.
pub fn clear_cookie(attrs: CookieAttrs) -> String {
    set_cookie("", 0, attrs)
}

/// What a socket token vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketClaim {
    pub user_id: i64,
    /// The session the token was issued for: revoking the session revokes its tokens.
    pub session_id: i64,
    /// Unix seconds.
    pub expires: i64,
}

/// Why a socket token was not accepted. Deliberately carries no token text (tokens never
/// reach the logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed socket token",
            TokenError::BadSignature => "socket token signature does not verify",
            TokenError::Expired => "socket token expired",
        })
    }
}

/// `{user_id}.{session_id}.{expires}.{base64url HMAC-SHA256}`. The claim is readable (ids and
/// a time are no secret); only the signature needs the server's secret.
pub fn sign(secret: &[u8], claim: SocketClaim) -> String {
    let body = format!("{}.{}.{}", claim.user_id, claim.session_id, claim.expires);
    let tag = mac(secret, &body).finalize().into_bytes();
    format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Check a socket token's signature (in constant time) and expiry.
pub fn verify(secret: &[u8], token: &str, now: Timestamp) -> Result<SocketClaim, TokenError> {
    let (body, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| TokenError::Malformed)?;
    mac(secret, body)
        .verify_slice(&tag)
        .map_err(|_| TokenError::BadSignature)?;
    let mut parts = body.split('.').map(str::parse::<i64>);
    let (Some(Ok(user_id)), Some(Ok(session_id)), Some(Ok(expires)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if now.as_second() >= expires {
        return Err(TokenError::Expired);
    }
    Ok(SocketClaim {
        user_id,
        session_id,
        expires,
    })
}

fn mac(secret: &[u8], body: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(SOCKET_TOKEN_CONTEXT);
    mac.update(body.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn claim() -> SocketClaim {
        SocketClaim {
            user_id: 7,
            session_id: 3,
            expires: now().as_second() + 300,
        }
    }

    #[test]
    fn signed_token_verifies_and_carries_its_claim() {
        let token = sign(SECRET, claim());
        assert_eq!(verify(SECRET, &token, now()), Ok(claim()));
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let token = sign(b"another secret", claim());
        assert_eq!(verify(SECRET, &token, now()), Err(TokenError::BadSignature));
    }

    #[test]
    fn token_with_an_edited_claim_is_refused() {
        let token = sign(SECRET, claim());
        let forged = token.replacen("7.", "1.", 1);
        assert_eq!(
            verify(SECRET, &forged, now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let token = sign(SECRET, claim());
        let later = Timestamp::from_second(claim().expires).unwrap();
        assert_eq!(verify(SECRET, &token, later), Err(TokenError::Expired));
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in ["", "abc", "1.2.3", "a.b.c.!!!", "x.y.z.AAAA"] {
            assert!(verify(SECRET, garbage, now()).is_err(), "{garbage}");
        }
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("theme=dark"));
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; kaffediem_session=tok; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("tok"));
        let mut empty = HeaderMap::new();
        empty.append(COOKIE, HeaderValue::from_static("kaffediem_session="));
        assert_eq!(session_cookie(&empty), None);
    }

    #[test]
    fn cookie_carries_the_configured_attributes() {
        let attrs = CookieAttrs {
            same_site: SameSite::Strict,
            secure: true,
        };
        assert_eq!(
            set_cookie("t", 60, attrs),
            "kaffediem_session=t; HttpOnly; Path=/; SameSite=Strict; Secure; Max-Age=60"
        );
        assert!(clear_cookie(attrs).contains("Max-Age=0"));
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
