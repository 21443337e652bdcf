//! The sending half of a socket's bounded outbound queue, and broadcasts encoded once.
//! CONTRACT STUB: the phoenix helper replaces the bodies.

use std::sync::Arc;

use super::frame::{Payload, Vsn};

/// A server broadcast (`[null, null, topic, event, payload]`), encoded at most once per
/// serializer however many sockets receive it; every socket gets the same bytes.
pub struct Broadcast {
    pub topic: String,
    pub event: String,
    pub payload: Payload,
}

impl Broadcast {
    pub fn new(topic: impl Into<String>, event: impl Into<String>, payload: Payload) -> Arc<Self> {
        Arc::new(Broadcast {
            topic: topic.into(),
            event: event.into(),
            payload,
        })
    }

    /// The frame for sockets speaking `vsn` (encoded on first use, then shared).
    pub fn encoded(&self, _vsn: Vsn) -> tokio_tungstenite::tungstenite::Message {
        todo!()
    }
}

/// Handle to one join instance (one topic on one socket). Cheap to clone. Sending never
/// waits: when the socket's queue is full the socket is closed with 1013 (slow consumer).
#[derive(Clone)]
pub struct Outbox {}

impl Outbox {
    /// A process-unique id of the socket this outbox feeds (for registries and logs).
    pub fn socket_id(&self) -> u64 {
        todo!()
    }

    /// Queue a broadcast for this join. `seq` orders it against the join's snapshot (see
    /// [`super::JoinResult::Ok`]). Returns `false` when the socket is gone or the join has
    /// ended, so the caller can drop this subscriber.
    pub fn broadcast(&self, _seq: u64, _msg: &Arc<Broadcast>) -> bool {
        todo!()
    }

    /// Push `event` to this join only (`[join_ref, null, topic, event, payload]`).
    pub fn push(&self, _event: &str, _payload: Payload) -> bool {
        todo!()
    }

    /// The channel failed asynchronously: the socket sends `phx_error` and unjoins the topic.
    pub fn crash(&self) {
        todo!()
    }

    /// Whether the socket or this join is gone.
    pub fn is_closed(&self) -> bool {
        todo!()
    }
}
