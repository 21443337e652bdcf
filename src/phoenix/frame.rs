//! Frames and serializers: V2 JSON arrays, V1 JSON objects, V2 binary pushes.
//! CONTRACT STUB: the phoenix helper replaces the bodies.

use bytes::Bytes;

/// The serializer a socket negotiated through `vsn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vsn {
    V1,
    V2,
}

/// A message payload: JSON, or raw bytes for binary frames (V2 only).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(serde_json::Value),
    Binary(Bytes),
}

impl Payload {
    /// The JSON value, or `None` for a binary payload.
    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Payload::Json(v) => Some(v),
            Payload::Binary(_) => None,
        }
    }
}
