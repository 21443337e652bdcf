//! Every route the daemon answers, in one table: a request's path is parsed once into the
//! [`Resource`] it names, and [`dispatch`] maps method + resource to its handler. Every
//! handler answers `Result<Response, ApiError>`, so a 404, a 405 (with the `Allow` the
//! resource takes) or a refused cross-site write looks the same on every route.
//!
//! Checks keep one order everywhere: unknown path (404) → method (405) → cross-site write
//! (403) → the handler's own (who may, which record).

use std::sync::Arc;

use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};

use super::api::{self, collections, ApiError};
use super::{cors, App, Body, Incoming};
use crate::net::ClientAddr;
use crate::store::Collection;

/// What a request's path names, before its method is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource<'a> {
    /// `/socket/websocket`: the Phoenix WebSocket transport (it judges the method itself).
    WebSocket,
    /// `/socket/longpoll`: the Phoenix LongPoll transport (it judges the method itself).
    LongPoll,
    /// `/healthz`
    Healthz,
    /// `/metrics`
    Metrics,
    /// `/api/session`: log in, who am I, log out.
    Session,
    /// `/api/session/token`: a socket token for the session.
    SessionToken,
    /// `/api/menu`
    Menu,
    /// `/api/files/item/{id}/{filename}`: an item's image file.
    ItemImage { id: i64, filename: &'a str },
    /// `/api/collections/{collection}/records`
    Records(Collection),
    /// `/api/collections/{collection}/records/{id}`; the id is checked after who may ask
    /// (an anonymous caller learns "log in", not which ids exist).
    Record(Collection, &'a str),
}

impl<'a> Resource<'a> {
    /// The resource `path` names, or the 404 it gets.
    pub fn parse(path: &'a str) -> Result<Resource<'a>, ApiError> {
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
        Ok(match segments[..] {
            ["socket", "websocket"] => Resource::WebSocket,
            ["socket", "longpoll"] => Resource::LongPoll,
            ["healthz"] => Resource::Healthz,
            ["metrics"] => Resource::Metrics,
            ["api", "session"] => Resource::Session,
            ["api", "session", "token"] => Resource::SessionToken,
            ["api", "menu"] => Resource::Menu,
            ["api", "files", collection, id, filename] => match (collection, id.parse()) {
                ("item", Ok(id)) => Resource::ItemImage { id, filename },
                _ => return Err(ApiError::NotFound("file not found")),
            },
            ["api", "collections", ref rest @ ..] => {
                // Trailing slashes are forgiven here (and only here, as they always were).
                let end = rest
                    .iter()
                    .rposition(|s| !s.is_empty())
                    .map_or(0, |i| i + 1);
                let (name, id) = match rest[..end] {
                    [name, "records"] => (name, None),
                    [name, "records", id] => (name, Some(id)),
                    _ => return Err(ApiError::NotFound("not found")),
                };
                let collection =
                    Collection::from_name(name).ok_or(ApiError::NotFound("unknown collection"))?;
                match id {
                    None => Resource::Records(collection),
                    Some(id) => Resource::Record(collection, id),
                }
            }
            _ => return Err(ApiError::NotFound("not found")),
        })
    }

    /// The `Allow` header of a 405: the methods [`dispatch`] routes for this resource.
    fn allow(&self) -> &'static str {
        match self {
            Resource::Healthz | Resource::Metrics => "GET, HEAD",
            Resource::Session => "GET, POST, DELETE",
            Resource::Records(_) => "GET, POST",
            Resource::Record(..) => "GET, PATCH, PUT, DELETE",
            Resource::SessionToken
            | Resource::Menu
            | Resource::ItemImage { .. }
            | Resource::WebSocket
            | Resource::LongPoll => "GET",
        }
    }

    /// Answers that say who someone is; no cache may keep them (whatever the status).
    fn is_private(&self) -> bool {
        matches!(self, Resource::Session | Resource::SessionToken)
    }
}

/// Answer `req` from the client at `client` (after `http.trusted_proxies`). HEAD has already
/// become GET (except on the socket paths). Answers get their CORS headers here too, except
/// the WebSocket handshake and LongPoll's, which carry Phoenix's own.
pub async fn route(app: &Arc<App>, req: Request<Incoming>, client: ClientAddr) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let origin = app.cors.origin(req.headers());
    let has_origin = req.headers().contains_key(header::ORIGIN);
    let resource = Resource::parse(&path);
    let private = resource.as_ref().is_ok_and(Resource::is_private);
    let mut response = match (&method, resource) {
        (_, Ok(Resource::LongPoll)) => return app.endpoint.long_poll(req, client.0).await,
        (_, Ok(Resource::WebSocket)) => app.endpoint.upgrade(req, client.0).await,
        // Preflights are answered for any path: the browser asks before it knows.
        (&Method::OPTIONS, _) => cors::preflight(),
        (_, Err(e)) => e.into_response(&method, &path),
        (_, Ok(resource)) => dispatch(app, req, resource, client)
            .await
            .unwrap_or_else(|e| e.into_response(&method, &path)),
    };
    if private {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        cors::decorate(&mut response, origin, has_origin);
    }
    response
}

/// The route table: method + resource → handler.
async fn dispatch(
    app: &Arc<App>,
    req: Request<Incoming>,
    resource: Resource<'_>,
    client: ClientAddr,
) -> Result<Response<Body>, ApiError> {
    use Resource::*;
    match (req.method().clone(), resource) {
        (Method::GET, Healthz) => Ok(super::healthz(app).await),
        (Method::GET, Metrics) => Ok(super::metrics::guarded(app, req.headers(), client.0)),

        (Method::POST, Session) => {
            same_origin(app, &req)?;
            app.auth.login(req, client.0).await
        }
        (Method::GET, Session) => app.auth.current(req.headers()).await,
        (Method::DELETE, Session) => {
            same_origin(app, &req)?;
            app.auth.logout(req.headers()).await
        }
        (Method::GET, SessionToken) => app.auth.socket_token(req.headers()).await,

        (Method::GET, Menu) => api::menu(app, &req).await,
        (Method::GET, ItemImage { id, filename }) => api::item_image(app, &req, id, filename).await,

        (Method::GET, Records(c)) => collections::list(app, &req, c).await,
        (Method::POST, Records(c)) => {
            same_origin(app, &req)?;
            collections::create(app, req, c).await
        }
        (Method::GET, Record(c, id)) => collections::get(app, &req, c, id).await,
        (Method::PATCH | Method::PUT, Record(c, id)) => {
            same_origin(app, &req)?;
            collections::update(app, req, c, id).await
        }
        (Method::DELETE, Record(c, id)) => {
            same_origin(app, &req)?;
            collections::delete(app, &req, c, id).await
        }

        (_, resource) => Err(ApiError::MethodNotAllowed(resource.allow())),
    }
}

/// Writes (and logins, logouts) only from pages that may write: a foreign page could
/// otherwise act with a visitor's cookie, or log them into its own account.
fn same_origin(app: &App, req: &Request<Incoming>) -> Result<(), ApiError> {
    if app.cors.may_write(req.headers()) {
        Ok(())
    } else {
        Err(ApiError::CrossSite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_resource_or_the_404_they_get() {
        let parse = |p| Resource::parse(p).map_err(|e| format!("{e:?}"));
        assert_eq!(parse("/api/menu"), Ok(Resource::Menu));
        assert_eq!(
            parse("/api/collections/item/records//"),
            Ok(Resource::Records(Collection::Item))
        );
        assert_eq!(
            parse("/api/collections/order/records/x"),
            Ok(Resource::Record(Collection::Order, "x"))
        );
        assert_eq!(
            parse("/api/files/item/7/a%20b.png"),
            Ok(Resource::ItemImage {
                id: 7,
                filename: "a%20b.png"
            })
        );
        let not_found = |p| parse(p).unwrap_err();
        assert!(not_found("/api/collections/nope/records").contains("unknown collection"));
        assert!(not_found("/api/collections/item").contains("\"not found\""));
        assert!(not_found("/api/files/order/7/x").contains("file not found"));
        assert!(not_found("/api/files/item/7").contains("\"not found\""));
        assert!(not_found("/api/menu/").contains("\"not found\""));
        assert!(not_found("/api/session/").contains("\"not found\""));
        assert!(not_found("*").contains("\"not found\""));
    }
}
