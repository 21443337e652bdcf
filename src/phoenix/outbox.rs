//! A socket's bounded outbound queue (in [`SocketShared`]) and its sending handles
//! ([`Outbox`]), and broadcasts encoded at most once per serializer ([`Broadcast`]). Nothing
//! here ever waits: a full queue marks the socket as a slow consumer and wakes it to close
//! with 1013.
//!
//! A WebSocket over TCP hands its connection to a [`DirectWriter`] while its task has nothing
//! left to write: a broadcast is then written straight from the sender (the fan-out) with
//! one non-blocking `sendmsg`, and the socket task is neither woken nor polled. Whatever the
//! connection does not take at once goes through the queue as before, and the task takes the
//! connection back. The hand-over is decided under the queue's lock, so the order of frames
//! on the wire is the order of the queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use futures_util::task::AtomicWaker;
use tokio_tungstenite::tungstenite::Message;

use super::frame::{self, Payload, Vsn};
use super::websocket::{DirectWriter, Remainder, Wrote};

/// A server broadcast (`[null, null, topic, event, payload]`), encoded at most once per
/// serializer however many sockets receive it; every socket gets the same bytes.
pub struct Broadcast {
    pub topic: String,
    pub event: String,
    pub payload: Payload,
    // One lazily built frame per serializer. `Message` is `Bytes`-backed, so the clones handed
    // to each socket share this one buffer.
    v1: OnceLock<Message>,
    v2: OnceLock<Message>,
}

impl Broadcast {
    pub fn new(topic: impl Into<String>, event: impl Into<String>, payload: Payload) -> Arc<Self> {
        Arc::new(Broadcast {
            topic: topic.into(),
            event: event.into(),
            payload,
            v1: OnceLock::new(),
            v2: OnceLock::new(),
        })
    }

    /// The frame for sockets speaking `vsn` (encoded on first use, then shared).
    pub fn encoded(&self, vsn: Vsn) -> Message {
        let cell = match vsn {
            Vsn::V1 => &self.v1,
            Vsn::V2 => &self.v2,
        };
        cell.get_or_init(|| frame::encode_broadcast(vsn, &self.topic, &self.event, &self.payload))
            .clone()
    }
}

impl std::fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("topic", &self.topic)
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

/// One item of a socket's outbound queue, tagged with the join instance it belongs to. Kept
/// small (32 bytes): a burst queues hundreds per socket.
pub(crate) struct Outbound {
    pub(crate) join: u64,
    pub(crate) seq: u64,
    pub(crate) kind: OutKind,
}

pub(crate) enum OutKind {
    Broadcast(Arc<Broadcast>),
    Push(Box<(String, Payload)>),
    Crash,
}

/// State a socket shares with its outboxes and its endpoint.
pub(crate) struct SocketShared {
    pub(crate) id: u64,
    /// A close requested from outside the socket task (slow consumer, `close_all`); 0 = none.
    close_code: AtomicU16,
    waker: AtomicWaker,
    /// The outbound queue: filled by outboxes (the fan-out, channels), emptied by the socket
    /// task. A plain deque under an uncontended lock rather than a channel: it allocates
    /// nothing until used and gives back what a burst made it grow, so an idle socket costs
    /// a few dozen bytes here.
    queue: Mutex<Queue>,
    /// Set when the socket stops taking items (it is closing); sends fail from then on.
    closed: AtomicBool,
    /// The application's id for this socket ([`super::SocketHandler::id`]), set once admitted.
    pub(crate) app_id: OnceLock<String>,
}

struct Queue {
    items: VecDeque<Outbound>,
    limit: usize,
    /// Writes broadcasts straight to the connection (a WebSocket over TCP only).
    direct: Option<DirectWriter>,
    /// The socket task has written everything and waits: the connection is the direct
    /// writer's until the task claims it back ([`SocketShared::claim_wire`]). Only ever true
    /// while `items` is empty.
    handed: bool,
    /// The unwritten rest of a frame the direct writer started; the task writes it first.
    rest: Option<Remainder>,
}

/// A drained queue keeps at most this many slots; a burst's larger allocation is freed.
const IDLE_QUEUE_SLOTS: usize = 16;

impl SocketShared {
    /// A socket whose queue holds at most `limit` items.
    pub(crate) fn new(id: u64, limit: usize) -> Self {
        SocketShared {
            id,
            close_code: AtomicU16::new(0),
            waker: AtomicWaker::new(),
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                limit: limit.max(1),
                direct: None,
                handed: false,
                rest: None,
            }),
            closed: AtomicBool::new(false),
            app_id: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next queued item. The socket task registers its waker before asking, so an item
    /// queued right after `None` wakes it.
    pub(crate) fn pop(&self) -> Option<Outbound> {
        let mut queue = self.lock();
        let item = queue.items.pop_front();
        if queue.items.is_empty() && queue.items.capacity() > IDLE_QUEUE_SLOTS {
            queue.items = VecDeque::new();
        }
        item
    }

    /// Stop taking items and drop the queued ones; the direct writer is dropped too.
    pub(crate) fn close_queue(&self) {
        self.closed.store(true, Ordering::Release);
        let mut queue = self.lock();
        queue.handed = false;
        let dropped = (
            std::mem::take(&mut queue.items),
            queue.direct.take(),
            queue.rest.take(),
        );
        drop(queue);
        drop(dropped);
    }

    /// Let `writer` write broadcasts while the connection is handed to it.
    pub(crate) fn set_direct(&self, writer: DirectWriter) {
        self.lock().direct = Some(writer);
    }

    /// The socket task takes the connection back (it is about to write, read a message that
    /// may be answered, or end), with the rest of a frame the direct writer started, which
    /// must be written first.
    pub(crate) fn claim_wire(&self) -> Option<Remainder> {
        let mut queue = self.lock();
        queue.handed = false;
        queue.rest.take()
    }

    /// The socket task has written everything it had and waits: broadcasts may go straight
    /// to the connection until it claims it back. Not while anything is queued (the task was
    /// woken for it) or once the socket is closing.
    pub(crate) fn release_wire(&self) {
        let mut queue = self.lock();
        if queue.items.is_empty()
            && queue.rest.is_none()
            && queue.direct.is_some()
            && !self.queue_closed()
            && self.requested_close().is_none()
        {
            queue.handed = true;
        }
    }

    fn queue_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Write a broadcast straight to the connection when it is handed over, else queue the
    /// item and wake the socket; a full queue closes the socket as a slow consumer.
    fn push(&self, item: Outbound, join: &JoinShared) -> bool {
        let mut queue = self.lock();
        if self.queue_closed() {
            return false;
        }
        if queue.handed {
            // The socket task is parked with nothing to write, and it claims the connection
            // back before it handles anything (so the join is current unless it ended).
            if join.ended.load(Ordering::Acquire) {
                return false;
            }
            if let (OutKind::Broadcast(msg), Some(direct)) = (&item.kind, &queue.direct) {
                if item.seq <= join.after_seq.load(Ordering::Acquire) {
                    return true; // already in the join's snapshot, as `Socket::outbound` says
                }
                match direct.write(msg) {
                    Wrote::All => return true,
                    Wrote::Part(rest) => {
                        queue.rest = Some(rest);
                        queue.handed = false;
                        drop(queue);
                        self.waker.wake();
                        return true;
                    }
                    Wrote::Nothing => {}
                }
            }
            queue.handed = false;
        }
        if queue.items.len() >= queue.limit {
            drop(queue);
            // The client does not keep up. Waiting would delay every other subscriber, so
            // the socket is closed; its client reconnects and rejoins to a fresh snapshot.
            self.request_close(1013);
            return false;
        }
        queue.items.push_back(item);
        drop(queue);
        self.waker.wake();
        true
    }

    /// Ask the socket task to close with `code`; the first request wins.
    pub(crate) fn request_close(&self, code: u16) {
        let _ = self
            .close_code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.waker.wake();
    }

    pub(crate) fn requested_close(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Wake the socket task (a long-poll request left it input or made room for output).
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }
}

/// A join instance's liveness, flipped by the socket when the join ends (leave, duplicate
/// join, crash, refused join) so the application can drop the subscriber.
pub(crate) struct JoinShared {
    pub(crate) id: u64,
    pub(crate) ended: AtomicBool,
    /// Broadcasts at or below this position are in the join's snapshot (set when it is joined).
    after_seq: AtomicU64,
}

/// Handle to one join instance (one topic on one socket). Cheap to clone. Sending never
/// waits: when the socket's queue is full the socket is closed with 1013 (slow consumer).
#[derive(Clone)]
pub struct Outbox {
    socket: Arc<SocketShared>,
    join: Arc<JoinShared>,
}

impl Outbox {
    pub(crate) fn new(socket: Arc<SocketShared>, join_id: u64) -> Self {
        let join = Arc::new(JoinShared {
            id: join_id,
            ended: AtomicBool::new(false),
            after_seq: AtomicU64::new(0),
        });
        Outbox { socket, join }
    }

    pub(crate) fn join_id(&self) -> u64 {
        self.join.id
    }

    /// The join is in place: broadcasts at or below `seq` are in its snapshot.
    pub(crate) fn joined_at(&self, seq: u64) {
        self.join.after_seq.store(seq, Ordering::Release);
    }

    /// Mark this join instance as over; later sends return `false`.
    pub(crate) fn end(&self) {
        self.join.ended.store(true, Ordering::Release);
    }

    /// A process-unique id of the socket this outbox feeds (for registries and logs).
    pub fn socket_id(&self) -> u64 {
        self.socket.id
    }

    /// Queue a broadcast for this join. `seq` orders it against the join's snapshot (see
    /// [`super::JoinResult::Ok`]). Returns `false` when the socket is gone or the join has
    /// ended, so the caller can drop this subscriber.
    pub fn broadcast(&self, seq: u64, msg: &Arc<Broadcast>) -> bool {
        self.send(seq, OutKind::Broadcast(Arc::clone(msg)))
    }

    /// Push `event` to this join only (`[join_ref, null, topic, event, payload]`).
    pub fn push(&self, event: &str, payload: Payload) -> bool {
        self.send(0, OutKind::Push(Box::new((event.to_owned(), payload))))
    }

    /// The channel failed asynchronously: the socket sends `phx_error` and unjoins the topic.
    pub fn crash(&self) {
        self.send(0, OutKind::Crash);
    }

    /// How many items the socket's outbound queue holds at most (shared by all its joins).
    pub fn queue_capacity(&self) -> usize {
        self.socket.lock().limit
    }

    /// Whether the socket or this join is gone.
    pub fn is_closed(&self) -> bool {
        self.join.ended.load(Ordering::Acquire)
            || self.socket.queue_closed()
            || self.socket.requested_close().is_some()
    }

    fn send(&self, seq: u64, kind: OutKind) -> bool {
        if self.is_closed() {
            return false;
        }
        let item = Outbound {
            join: self.join.id,
            seq,
            kind,
        };
        self.socket.push(item, &self.join)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_is_encoded_once_and_shared() {
        let b = Broadcast::new("t", "e", Payload::Json(serde_json::json!({"x": 1})));
        let (Message::Text(a), Message::Text(c)) = (b.encoded(Vsn::V2), b.encoded(Vsn::V2)) else {
            panic!("text frames expected");
        };
        assert_eq!(a.as_str().as_ptr(), c.as_str().as_ptr(), "same buffer");
        assert_eq!(a.as_str(), r#"[null,null,"t","e",{"x":1}]"#);
    }

    #[test]
    fn full_queue_requests_slow_consumer_close() {
        let socket = Arc::new(SocketShared::new(7, 1));
        let outbox = Outbox::new(Arc::clone(&socket), 1);
        let b = Broadcast::new("t", "e", Payload::Json(serde_json::json!({})));
        assert!(outbox.broadcast(1, &b));
        assert!(!outbox.broadcast(2, &b));
        assert_eq!(socket.requested_close(), Some(1013));
        assert!(outbox.is_closed());
        assert_eq!(outbox.socket_id(), 7);
    }

    #[test]
    fn queue_capacity_is_the_bound_not_what_is_free() {
        let outbox = Outbox::new(Arc::new(SocketShared::new(1, 4)), 1);
        let b = Broadcast::new("t", "e", Payload::Json(serde_json::json!({})));
        assert!(outbox.broadcast(1, &b));
        assert_eq!(outbox.queue_capacity(), 4);
    }

    #[test]
    fn ended_join_refuses_sends() {
        let outbox = Outbox::new(Arc::new(SocketShared::new(1, 4)), 1);
        outbox.end();
        assert!(!outbox.push("e", Payload::Json(serde_json::json!({}))));
    }

    #[test]
    fn drained_queue_gives_its_room_back_and_a_closed_one_refuses() {
        let socket = Arc::new(SocketShared::new(1, 1000));
        let outbox = Outbox::new(Arc::clone(&socket), 1);
        let b = Broadcast::new("t", "e", Payload::Json(serde_json::json!({})));
        for seq in 0..500 {
            assert!(outbox.broadcast(seq, &b));
        }
        let mut seqs = Vec::new();
        while let Some(item) = socket.pop() {
            seqs.push(item.seq);
        }
        assert_eq!(seqs, (0..500).collect::<Vec<_>>(), "in order, none lost");
        assert!(socket.lock().items.capacity() <= IDLE_QUEUE_SLOTS);
        socket.close_queue();
        assert!(!outbox.broadcast(501, &b));
        assert!(outbox.is_closed());
        assert!(socket.pop().is_none());
    }

    #[test]
    fn outbound_items_stay_small() {
        assert!(std::mem::size_of::<Outbound>() <= 32);
    }
}
