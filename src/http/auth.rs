//! Accounts, sessions and socket tokens (SPEC 6). CONTRACT STUB: the types and signatures
//! below are what the API routes and the socket handler code against; the auth engineer
//! fills in the bodies.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{HeaderMap, Request, Response};

use crate::channels::{Authenticate, Viewer};
use crate::config::Config;
use crate::phoenix::{ConnectInfo, Refused};
use crate::store::{Store, StoreError};

use super::Body;

/// A logged-in user, as the API sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
}

/// Sessions, socket tokens, login rate limiting, the bootstrap admin.
pub struct Auth {}

impl Auth {
    /// Load (or create) the socket-token secret, create the first admin when there are no
    /// users, and get ready to check sessions.
    pub async fn open(_store: &Store, _config: &Config) -> Result<Arc<Auth>, StoreError> {
        Ok(Arc::new(Auth {}))
    }

    /// Apply a reloaded configuration (cookie attributes, rate limits, token lifetime).
    pub fn set_config(&self, _config: &Config) {}

    /// Who sent this request: a valid, unexpired, unrevoked `kaffediem_session` cookie.
    pub async fn identify(&self, _headers: &HeaderMap) -> Option<Identity> {
        None
    }

    /// Answer `/api/session` (POST login, GET current, DELETE logout) and
    /// `/api/session/token`; `Err(req)` hands back any other request untouched.
    pub async fn route(
        &self,
        req: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Result<Response<Body>, Request<Incoming>> {
        Err(req)
    }
}

impl Authenticate for Auth {
    fn viewer(&self, _info: &ConnectInfo) -> Result<Option<Viewer>, Refused> {
        Ok(None)
    }
}
