//! A small HTTP/1.1 client for tests: one connection per request, full control over method,
//! headers and raw body bytes, so tests can send exactly what a browser or an attacker would.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

/// A finished response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request under construction.
pub struct Call {
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

pub fn call(addr: SocketAddr, method: &str, path: &str) -> Call {
    Call {
        addr,
        method: Method::from_bytes(method.as_bytes()).expect("method"),
        path: path.to_owned(),
        headers: Vec::new(),
        body: Bytes::new(),
    }
}

impl Call {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        ));
        self
    }

    pub fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .raw(value.to_string())
    }

    pub fn raw(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub async fn send(self) -> Reply {
        self.try_send().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Call::send`], but a connection refused or cut off is an `Err`, not a panic
    /// (for tests that kill the server under their clients).
    pub async fn try_send(self) -> Result<Reply, String> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header("host", self.addr.to_string());
        for (name, value) in self.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(self.body))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| format!("response: {e}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// GET `path` and expect JSON.
pub async fn get_json(addr: SocketAddr, path: &str) -> (StatusCode, Value) {
    let reply = call(addr, "GET", path).send().await;
    let status = reply.status;
    (status, reply.json())
}

/// The id of an enabled item of the café's menu (the demo's first one): something to order.
pub async fn enabled_item(addr: SocketAddr) -> i64 {
    let (_, items) = get_json(addr, "/api/collections/item/records").await;
    items
        .as_array()
        .and_then(|all| all.iter().find(|i| i["enable"] == true))
        .and_then(|i| i["id"].as_i64())
        .expect("an enabled item in the café's menu")
}
