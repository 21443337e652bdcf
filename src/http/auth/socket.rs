//! Socket tokens and socket authentication (SPEC 2 and 6): `GET /api/session/token` issues a
//! token signed with the database's key and bound to the caller's session; every socket
//! upgrade is judged by the 1.8 client's `authToken`, the `token` socket param, or the session
//! cookie on the upgrade request, and every join on a session socket reads the session again.
//! The session rows are read on the store's quick lane, so an upgrade waiting for the database
//! waits off the async threads and never holds up another socket.

use hyper::{HeaderMap, Response, StatusCode};
use jiff::Timestamp;
use serde_json::json;

use crate::channels::{AuthFuture, Authenticate, Credential, Viewer};
use crate::http::api::ApiError;
use crate::http::{json_response, Body};
use crate::phoenix::{ConnectInfo, Refused};
use crate::store::sessions;

use super::token::{self, session_cookie, token_hash, SocketClaim};
use super::Auth;

impl Auth {
    /// `GET /api/session/token`: a socket token for the caller's session, valid for
    /// `auth.socket_token_seconds`.
    pub(crate) async fn socket_token(
        &self,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, ApiError> {
        let Some(session) = self.session(headers).await else {
            return Err(ApiError::Unauthorized);
        };
        let seconds = i64::from(self.settings().socket_token_seconds);
        let expires = self.clock.now().as_second().saturating_add(seconds);
        let claim = SocketClaim {
            user_id: session.identity.user_id,
            session_id: session.id,
            expires,
        };
        let expires_at = Timestamp::from_second(expires)
            .map(|t| t.to_string())
            .unwrap_or_default();
        Ok(json_response(
            StatusCode::OK,
            &json!({"token": token::sign(&self.secret, claim), "expires_at": expires_at}),
        ))
    }

    /// The viewer a socket token vouches for, if its signature, expiry and session hold.
    async fn socket_token_viewer(&self, token: &str) -> Result<Viewer, Refused> {
        let claim = token::verify(&self.secret, token, self.clock.now())
            .map_err(|e| Refused(e.to_string()))?;
        let found = sessions::vouches(&self.store.readers, claim.session_id, self.clock.now());
        match found.await {
            Ok(Some((user_id, admin))) if user_id == claim.user_id => {
                self.vouched.record(claim.session_id, admin);
                Ok(Viewer {
                    // Set by `Cafe::connect` from the socket's address.
                    client: None,
                    user_id: Some(claim.user_id),
                    admin,
                    credential: Credential::Session(claim.session_id),
                })
            }
            Ok(_) => Err(Refused("the socket token's session has ended".into())),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a socket token");
                Err(Refused("cannot check the socket token".into()))
            }
        }
    }

    /// The viewer behind a session cookie sent with the upgrade. A stale cookie makes an
    /// anonymous socket, not a refused one: a public screen with an old cookie must still
    /// connect.
    async fn cookie_viewer(&self, cookie: &str) -> Option<Viewer> {
        let found = sessions::find(&self.store.readers, token_hash(cookie), self.clock.now());
        match found.await {
            Ok(session) => session.map(|session| {
                self.vouched.record(session.id, session.identity.is_admin);
                Viewer {
                    client: None,
                    user_id: Some(session.identity.user_id),
                    admin: session.identity.is_admin,
                    credential: Credential::Session(session.id),
                }
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a session cookie on a socket");
                None
            }
        }
    }

    /// The 1.8 client's `authToken`, else the `token` param, else the session cookie.
    async fn socket_viewer(&self, info: &ConnectInfo) -> Result<Option<Viewer>, Refused> {
        let offered = [
            info.auth_token.as_deref(),
            info.params.get("token").map(String::as_str),
        ]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty());
        if let Some(token) = offered {
            if self.admin_token.matches(token) {
                return Ok(Some(Viewer {
                    client: None,
                    user_id: None,
                    admin: true,
                    credential: Credential::AdminToken,
                }));
            }
            return self.socket_token_viewer(token).await.map(Some);
        }
        match session_cookie(&info.headers) {
            Some(cookie) => Ok(self.cookie_viewer(cookie).await),
            None => Ok(None),
        }
    }

    /// Read the socket's session again: an ended one closes the socket (and this join is
    /// anonymous), a changed user (demoted, say) joins with their rights as they are now.
    async fn recheck_viewer(&self, viewer: &Viewer) -> Option<Viewer> {
        let Credential::Session(session_id) = viewer.credential else {
            return Some(viewer.clone());
        };
        let found = sessions::vouches(&self.store.readers, session_id, self.clock.now()).await;
        match found {
            Ok(Some((user_id, admin))) => Some(Viewer {
                client: None,
                user_id: Some(user_id),
                admin,
                credential: viewer.credential,
            }),
            Ok(None) => {
                tracing::info!(
                    session_id,
                    "a join found its session ended; closing its sockets"
                );
                self.revoked(session_id);
                None
            }
            Err(e) => {
                // Cannot tell: this join gets no rights, and the socket stays for the session
                // watch to judge.
                tracing::warn!(error = %e, "cannot recheck a socket's session");
                Some(Viewer::default())
            }
        }
    }
}

impl Authenticate for Auth {
    fn viewer<'a>(
        &'a self,
        info: &'a ConnectInfo,
    ) -> AuthFuture<'a, Result<Option<Viewer>, Refused>> {
        Box::pin(self.socket_viewer(info))
    }

    fn recheck<'a>(&'a self, viewer: &'a Viewer) -> AuthFuture<'a, Option<Viewer>> {
        Box::pin(self.recheck_viewer(viewer))
    }
}
