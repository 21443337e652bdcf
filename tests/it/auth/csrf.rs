//! Login forgery (issue 10): `POST` and `DELETE /api/session` refuse a page on a foreign
//! origin as every API write does — a form there could otherwise log a visitor into the
//! attacker's account, or log the café's admin out, where `http.cookie_same_site = "None"`
//! lets the cookie travel.

use hyper::StatusCode;
use serde_json::json;

use super::{daemon_with, get_session, login_cookie, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::support::http::call;

const FRONTEND: &str = "http://localhost:5173";
const FOREIGN: &str = "https://attacker.example";

fn credentials() -> String {
    json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).to_string()
}

#[tokio::test]
async fn a_login_from_a_foreign_page_is_refused_whatever_its_content_type() {
    let d = daemon_with(|c| c.http.allowed_origins = vec![FRONTEND.into()]).await;
    for content_type in [None, Some("text/plain"), Some("application/json")] {
        let mut forged = call(d.addr, "POST", "/api/session").header("origin", FOREIGN);
        if let Some(content_type) = content_type {
            forged = forged.header("content-type", content_type);
        }
        let reply = forged.raw(credentials()).send().await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{content_type:?}");
        assert!(reply.header("set-cookie").is_none(), "{content_type:?}");
        assert!(reply.json()["errors"].is_object());
    }
    // The frontend, our own page, and scripts (no Origin) still log in.
    for origin in [
        Some(FRONTEND.to_owned()),
        Some(format!("http://{}", d.addr)),
        None,
    ] {
        let mut login = call(d.addr, "POST", "/api/session");
        if let Some(origin) = &origin {
            login = login.header("origin", origin);
        }
        let reply = login
            .json(&serde_json::from_str(&credentials()).unwrap())
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{origin:?}: {}", reply.text());
    }
    d.stop().await;
}

#[tokio::test]
async fn a_logout_from_a_foreign_page_is_refused() {
    let d = daemon_with(|c| c.http.allowed_origins = vec![FRONTEND.into()]).await;
    let cookie = login_cookie(&d, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let forged = call(d.addr, "DELETE", "/api/session")
        .header("origin", FOREIGN)
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(get_session(&d, &cookie).await.status, StatusCode::OK);
    let logout = call(d.addr, "DELETE", "/api/session")
        .header("origin", FRONTEND)
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get_session(&d, &cookie).await.status,
        StatusCode::NO_CONTENT
    );
    d.stop().await;
}
