//! The per-socket state machine: one tokio task per socket owns its connection (a `Wire`:
//! the WebSocket, or a long-poll session), its joined topics (each a `Box<dyn Channel>`) and
//! the receiving end of its outbound queue, and applies the join/leave/event/heartbeat rules
//! of Phoenix 1.8 plus the idle timeout and close codes.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt, Sink, SinkExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::frame::{self, InMessage, Payload, Vsn};
use super::outbox::{OutKind, Outbound, Outbox, SocketShared};
use super::rate::Bucket;
use super::transport::{Endpoint, EndpointConfig, SocketSlot};
use super::websocket::{Conn, CountSent, Remainder, WsWire};
use super::{BoxFuture, Channel, JoinResult, Reply, SocketHandler};

/// What a socket's state machine reads client frames from and writes server frames to. The
/// WebSocket is one; a long-poll session (`longpoll.rs`) is the other, so both transports share
/// every protocol rule below.
pub(crate) trait Wire: Sink<Message, Error = WsError> + Unpin {
    /// Whether the endpoint's idle timeout applies. Long-poll clients send no heartbeats; their
    /// sessions end through their own inactivity reaper instead.
    const IDLE_TIMEOUT: bool;

    /// The next thing the client sent. Registers the task's waker when nothing is there yet.
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Inbound>;

    /// Whether everything handed to the wire is written, so the connection may be handed to
    /// a direct writer (a WebSocket over TCP; never a long-poll session).
    fn drained(&mut self) -> bool {
        false
    }

    /// Take back the unwritten rest of a frame a direct writer started; it goes out first.
    fn resume(&mut self, _rest: Remainder) {}
}

/// One step of a client's input.
pub(crate) enum Inbound {
    Message(Message),
    /// The client went away (or its session expired); nothing more to send.
    Gone,
    /// Unreadable input: close with this code (1007, 1009, 1011, ...).
    Failed(u16, String),
}

/// Read buffer per socket. Clients send little (heartbeats ~60 bytes, joins ~200), and an idle
/// subscriber must stay cheap: tungstenite allocates and zero-fills this eagerly. A larger
/// client message (up to `max_message_bytes`) still fits: once its header is read the buffer
/// grows to the frame's length (reads then take at most this much at a time). 1 024 → 256 saved
/// 0.7 KiB per socket at 10 000 sockets (`BENCHMARKS.md`).
const READ_BUFFER_BYTES: usize = 256;
/// Stop reading a client that lets this many of our replies pile up (it is not reading).
const PAUSE_READING_AT: usize = 64;
/// How long a closing socket may take to get its close frame out to a slow client.
const CLOSE_WRITE_GRACE: Duration = Duration::from_secs(5);
/// How long a closing socket waits for the client to hang up after our close frame.
const CLOSE_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// One joined topic on this socket.
struct Joined {
    topic: String,
    /// The join_ref of the `phx_join` as the client sent it (may be null): stale checks and
    /// the ref of `phx_close`/`phx_error`.
    join_ref: Value,
    /// The channel's own join_ref (the join's ref when the client sent a null join_ref): used
    /// in replies to events and in pushes, as Phoenix's channel server does.
    channel_ref: Value,
    /// Broadcasts at or below this position are already in the join's snapshot.
    seq: u64,
    outbox: Outbox,
    channel: Box<dyn Channel>,
}

/// How the socket loop ended.
pub(crate) enum End {
    /// The client went away or closed; nothing more to send.
    Gone,
    /// The server closes with this code.
    Close(u16),
}

enum Event {
    Inbound(Inbound),
    WriteFailed,
    CloseRequested(u16),
    IdleCheck,
}

pub(crate) struct Socket<H: SocketHandler> {
    slot: SocketSlot<H>,
    session: Arc<H::Session>,
    vsn: Vsn,
    peer: SocketAddr,
    joined: Vec<Joined>,
    /// Replies and control frames produced by this task, written before queued items.
    pending: VecDeque<Message>,
    next_join_id: u64,
    unflushed: bool,
    /// The client sent a close frame; tungstenite answers it, we only read to the end.
    peer_closed: bool,
    /// This socket's join bucket (`joins_per_minute_per_socket`); its address has one too.
    joins: Bucket,
    /// Client frames read while a join was being answered (the wire is watched meanwhile so
    /// that a client that hangs up stops its join's snapshot); handled after the join, in
    /// order. At most [`DEFER_DURING_JOIN`].
    deferred: VecDeque<Message>,
}

/// Client frames read ahead while a join is answered; past this the wire is left unread
/// until the join is done (a client sending more is not served faster by us buffering it).
const DEFER_DURING_JOIN: usize = 4;

/// Why a join was given up before its reply.
enum JoinCancelled {
    /// The socket ends (close requested from outside, the client gone or unreadable).
    End(End),
    /// The client sent its close frame: handle it (it is the last deferred frame).
    PeerClosing,
}

/// Serve one upgraded connection until it closes. Dropping the slot at the end unregisters
/// the socket; dropping `joined` ends every subscription.
pub(crate) async fn run<H: SocketHandler>(
    slot: SocketSlot<H>,
    session: Arc<H::Session>,
    vsn: Vsn,
    peer: SocketAddr,
    io: TokioIo<Upgraded>,
    config: &EndpointConfig,
) {
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let sent: Arc<dyn CountSent> = Arc::clone(&slot.endpoint) as _;
    let (conn, direct) = Conn::new(io.into_inner(), vsn, sent);
    if let Some(writer) = direct {
        slot.shared.set_direct(writer);
    }
    let mut ws = WsWire::new(conn, ws_config, config.outbound_queue).await;
    let mut socket = Socket::new(slot, session, vsn, peer);
    let end = socket.serve(&mut ws).await;
    // Boxed (like joins): an idle socket's task then only holds the state of its read loop.
    Box::pin(socket.finish(ws, end)).await;
}

impl<H: SocketHandler> CountSent for Endpoint<H> {
    fn count_sent(&self, payload_bytes: usize) {
        self.metrics.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .bytes_sent
            .fetch_add(payload_bytes as u64, Ordering::Relaxed);
    }

    fn uncount_sent(&self, payload_bytes: usize) {
        self.metrics.messages_sent.fetch_sub(1, Ordering::Relaxed);
        self.metrics
            .bytes_sent
            .fetch_sub(payload_bytes as u64, Ordering::Relaxed);
    }
}

fn deadline(from: Instant, after: Duration) -> Instant {
    from.checked_add(after)
        .unwrap_or_else(|| from + Duration::from_secs(365 * 24 * 3600))
}

impl<H: SocketHandler> Socket<H> {
    /// A socket with nothing joined; its outbound queue lives in the slot's shared state.
    pub(crate) fn new(
        slot: SocketSlot<H>,
        session: Arc<H::Session>,
        vsn: Vsn,
        peer: SocketAddr,
    ) -> Self {
        let joins = Bucket::full(
            slot.endpoint.config().joins_per_minute_per_socket,
            Instant::now(),
        );
        Socket {
            slot,
            session,
            vsn,
            peer,
            joined: Vec::new(),
            pending: VecDeque::new(),
            next_join_id: 1,
            unflushed: false,
            peer_closed: false,
            joins,
            deferred: VecDeque::new(),
        }
    }

    fn idle_timeout<W: Wire>(&self) -> Duration {
        match W::IDLE_TIMEOUT {
            true => self.slot.endpoint.config().idle_timeout,
            false => Duration::MAX,
        }
    }

    /// Run the protocol over the connection until it ends; returns how it ended.
    pub(crate) async fn serve<W: Wire>(&mut self, ws: &mut W) -> End {
        let mut last_received = Instant::now();
        // The timer is only re-armed when it fires, so a busy socket does not touch the timer
        // wheel on every frame.
        let idle = tokio::time::sleep_until(deadline(last_received, self.idle_timeout::<W>()));
        tokio::pin!(idle);
        loop {
            let event = match self.deferred.pop_front() {
                Some(msg) => Event::Inbound(Inbound::Message(msg)),
                None => poll_fn(|cx| self.poll_event(cx, ws, idle.as_mut())).await,
            };
            match event {
                Event::CloseRequested(code) => return End::Close(code),
                Event::WriteFailed => return End::Gone,
                Event::IdleCheck => {
                    let due = deadline(last_received, self.idle_timeout::<W>());
                    if Instant::now() >= due {
                        tracing::debug!(peer = %self.peer, "idle socket closed");
                        return End::Close(1002);
                    }
                    idle.as_mut().reset(due);
                }
                Event::Inbound(Inbound::Gone) => return End::Gone,
                // A slow consumer is logged (and counted) when the socket is released.
                Event::Inbound(Inbound::Failed(1013, _)) => return End::Close(1013),
                Event::Inbound(Inbound::Failed(code, error)) => {
                    tracing::warn!(peer = %self.peer, %error, code, "unreadable client input, closing socket");
                    return End::Close(code);
                }
                Event::Inbound(Inbound::Message(msg)) => {
                    // Only Phoenix messages (the client's heartbeats every 30 s) are activity:
                    // WebSocket pings are answered but keep no socket open, or a client that
                    // pings and never reads would hold its socket (and what it is owed) forever.
                    if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
                        last_received = Instant::now();
                    }
                    if let Some(end) = self.on_message(msg, ws).await {
                        return end;
                    }
                }
            }
        }
    }

    fn poll_event<W: Wire>(
        &mut self,
        cx: &mut Context<'_>,
        ws: &mut W,
        idle: Pin<&mut Sleep>,
    ) -> Poll<Event> {
        self.slot.shared.register(cx.waker());
        // The connection is ours again until this returns `Pending` with nothing to write.
        if let Some(rest) = self.slot.shared.claim_wire() {
            ws.resume(rest);
        }
        if let Some(code) = self.slot.shared.requested_close() {
            return Poll::Ready(Event::CloseRequested(code));
        }
        if let Err(e) = self.poll_write(cx, ws) {
            tracing::debug!(peer = %self.peer, error = %e, "socket write failed");
            return Poll::Ready(Event::WriteFailed);
        }
        // A client that closed is read to the end whatever is pending (nothing more is sent).
        if self.pending.len() < PAUSE_READING_AT || self.peer_closed {
            if let Poll::Ready(item) = ws.poll_inbound(cx) {
                return Poll::Ready(Event::Inbound(item));
            }
        }
        if idle.poll(cx).is_ready() {
            return Poll::Ready(Event::IdleCheck);
        }
        // Parked with nothing left to write: broadcasts may go straight to the connection
        // (the waker is registered, so whatever gets queued instead wakes this task).
        if self.pending.is_empty() && !self.unflushed && !self.peer_closed && ws.drained() {
            self.slot.shared.release_wire();
        }
        Poll::Pending
    }

    /// Move frames to the WebSocket while it accepts them: own replies first, then the queue.
    /// Returns as soon as the connection would block; never waits.
    fn poll_write<W: Wire>(&mut self, cx: &mut Context<'_>, ws: &mut W) -> Result<(), WsError> {
        if self.peer_closed {
            // Nothing new is sent; what is queued goes out, tungstenite's close reply last.
            return match ws.poll_flush_unpin(cx) {
                Poll::Ready(Err(e)) => Err(e),
                _ => Ok(()),
            };
        }
        loop {
            match ws.poll_ready_unpin(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(ready) => ready?,
            }
            let msg = match self.pending.pop_front() {
                Some(msg) => {
                    if self.pending.is_empty() {
                        // Replies come a few at a time (joins, heartbeats); an idle socket
                        // keeps no room for them.
                        self.pending = VecDeque::new();
                    }
                    msg
                }
                // The waker was registered before (`poll_event`): an item queued after
                // this finds the queue empty wakes the task.
                None => match self.slot.shared.pop() {
                    Some(item) => match self.outbound(item) {
                        Some(msg) => msg,
                        None => continue,
                    },
                    None => break,
                },
            };
            self.count_sent(&msg);
            ws.start_send_unpin(msg)?;
            self.unflushed = true;
        }
        if self.unflushed {
            match ws.poll_flush_unpin(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(flushed) => flushed?,
            }
            self.unflushed = false;
        }
        Ok(())
    }

    fn count_sent(&self, msg: &Message) {
        let metrics = &self.slot.endpoint.metrics;
        metrics.messages_sent.fetch_add(1, Ordering::Relaxed);
        metrics
            .bytes_sent
            .fetch_add(msg.len() as u64, Ordering::Relaxed);
    }

    /// Turn a queued item into a frame, or drop it: items of a join instance that is no longer
    /// current (left, replaced, crashed) and broadcasts already in the join's snapshot.
    fn outbound(&mut self, item: Outbound) -> Option<Message> {
        let idx = self.position_of_join(item.join)?;
        let joined = &self.joined[idx];
        match item.kind {
            OutKind::Broadcast(b) => (item.seq > joined.seq).then(|| b.encoded(self.vsn)),
            OutKind::Push(push) => {
                let (event, payload) = *push;
                let (vsn, topic) = (self.vsn, &joined.topic);
                Some(frame::encode_push(
                    vsn,
                    &joined.channel_ref,
                    topic,
                    &event,
                    &payload,
                ))
            }
            OutKind::Crash => {
                let (topic, join_ref) = self.unjoin(idx);
                Some(frame::encode_error(self.vsn, &join_ref, &topic))
            }
        }
    }

    /// Move everything already queued into `pending`, so a reply follows the channel's own
    /// pushes as it does in Phoenix (frames from one channel keep their order).
    fn drain_queue(&mut self) {
        while let Some(item) = self.slot.shared.pop() {
            if let Some(msg) = self.outbound(item) {
                self.pending.push_back(msg);
            }
        }
    }

    fn position(&self, topic: &str) -> Option<usize> {
        self.joined.iter().position(|j| j.topic == topic)
    }

    fn position_of_join(&self, join_id: u64) -> Option<usize> {
        self.joined
            .iter()
            .position(|j| j.outbox.join_id() == join_id)
    }

    /// Frames with a null join_ref or the current one reach the channel; others are stale.
    fn accepts(&self, idx: usize, join_ref: &Value) -> bool {
        join_ref.is_null() || *join_ref == self.joined[idx].join_ref
    }

    /// Remove a join; dropping its channel ends its subscriptions.
    fn unjoin(&mut self, idx: usize) -> (String, Value) {
        let joined = self.joined.swap_remove(idx);
        joined.outbox.end();
        (joined.topic, joined.join_ref)
    }

    fn reply(
        &mut self,
        join_ref: &Value,
        reference: &Value,
        topic: &str,
        status: &str,
        payload: &Payload,
    ) {
        let msg = frame::encode_reply(self.vsn, join_ref, reference, topic, status, payload);
        self.pending.push_back(msg);
    }

    fn reply_json(
        &mut self,
        join_ref: &Value,
        reference: &Value,
        topic: &str,
        status: &str,
        response: Value,
    ) {
        self.reply(join_ref, reference, topic, status, &Payload::Json(response));
    }

    async fn on_message<W: Wire>(&mut self, msg: Message, ws: &mut W) -> Option<End> {
        let decoded = match msg {
            Message::Text(text) => frame::decode_text(self.vsn, text.as_str()),
            Message::Binary(data) => frame::decode_binary(self.vsn, &data),
            Message::Ping(_) => {
                // tungstenite queued the pong; make sure the writer flushes it now.
                self.unflushed = true;
                return None;
            }
            Message::Close(_) => {
                self.peer_closed = true;
                self.pending.clear();
                return None;
            }
            Message::Pong(_) | Message::Frame(_) => return None,
        };
        match decoded {
            Ok(m) => self.dispatch(m, ws).await,
            Err(e) => {
                tracing::warn!(peer = %self.peer, error = %e, "malformed Phoenix frame, closing socket with 1011");
                Some(End::Close(1011))
            }
        }
    }

    async fn dispatch<W: Wire>(&mut self, m: InMessage, ws: &mut W) -> Option<End> {
        // Heartbeats come before any routing and never need a join.
        if m.topic == "phoenix" && m.event == "heartbeat" {
            self.reply_json(&Value::Null, &m.reference, "phoenix", "ok", json!({}));
            return None;
        }
        match m.event.as_str() {
            "phx_join" => return Box::pin(self.join(m, ws)).await,
            "phx_leave" => self.leave(m),
            _ => self.event(m),
        }
        None
    }

    async fn join<W: Wire>(&mut self, m: InMessage, ws: &mut W) -> Option<End> {
        let InMessage {
            join_ref,
            reference,
            topic,
            payload,
            ..
        } = m;
        if !self.may_join() {
            tracing::debug!(peer = %self.peer, %topic, "join refused: too many joins");
            let reason = json!({"reason": "too many joins"});
            self.reply_json(&join_ref, &reference, &topic, "error", reason);
            return None;
        }
        // Duplicate join: the old instance ends now; its phx_close follows the new reply.
        let replaced = self.position(&topic).map(|idx| self.unjoin(idx));
        let limit = self.slot.endpoint.config().max_topics_per_socket;
        let outcome = if self.joined.len() >= limit {
            Err(Payload::Json(json!({"reason": "too many channels joined"})))
        } else {
            let join_id = self.next_join_id;
            self.next_join_id += 1;
            let outbox = Outbox::new(Arc::clone(&self.slot.shared), join_id);
            let handler = &self.slot.endpoint.handler;
            // A panic in the routing call itself counts as a crashed join, like one in the future.
            let routed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                handler.join(&self.session, &topic, payload, outbox.clone())
            }));
            let result = match routed {
                Ok(None) => {
                    outbox.end();
                    tracing::debug!(peer = %self.peer, %topic, "join of unmatched topic");
                    // Phoenix builds this reply without a join_ref.
                    let reason = json!({"reason": "unmatched topic"});
                    self.reply_json(&Value::Null, &reference, &topic, "error", reason);
                    return self.after_join(replaced);
                }
                Ok(Some(future)) => {
                    let shared = &self.slot.shared;
                    match Self::await_join(shared, ws, &mut self.deferred, future).await {
                        Err(cancelled) => {
                            // The join's work stops (its snapshot checks this outbox).
                            outbox.end();
                            return match cancelled {
                                JoinCancelled::End(end) => Some(end),
                                JoinCancelled::PeerClosing => self.after_join(replaced),
                            };
                        }
                        Ok(result) => result,
                    }
                }
                Err(panic) => Err(panic),
            };
            match result {
                Ok(JoinResult::Ok {
                    response,
                    seq,
                    channel,
                }) => {
                    let channel_ref = if join_ref.is_null() {
                        reference.clone()
                    } else {
                        join_ref.clone()
                    };
                    outbox.joined_at(seq);
                    // Sockets join a few topics and keep them for hours: no spare room.
                    self.joined.reserve_exact(1);
                    self.joined.push(Joined {
                        topic: topic.clone(),
                        join_ref: join_ref.clone(),
                        channel_ref,
                        seq,
                        outbox,
                        channel,
                    });
                    Ok(response)
                }
                Ok(JoinResult::Error(response)) => {
                    outbox.end();
                    Err(Payload::Json(response))
                }
                Err(_panic) => {
                    outbox.end();
                    tracing::warn!(peer = %self.peer, %topic, "join crashed");
                    Err(Payload::Json(json!({"reason": "join crashed"})))
                }
            }
        };
        match outcome {
            Ok(response) => self.reply(&join_ref, &reference, &topic, "ok", &response),
            Err(response) => self.reply(&join_ref, &reference, &topic, "error", &response),
        }
        self.after_join(replaced)
    }

    /// Charge a join to this socket's bucket and its address's. Every attempt costs, refused
    /// ones included: a join may read a whole snapshot before the channel says no.
    fn may_join(&mut self) -> bool {
        let config = self.slot.endpoint.config();
        let now = Instant::now();
        self.joins.take(config.joins_per_minute_per_socket, now)
            && self
                .slot
                .endpoint
                .join_buckets
                .take(self.peer.ip(), config.joins_per_minute_per_address)
    }

    fn after_join(&mut self, replaced: Option<(String, Value)>) -> Option<End> {
        if let Some((topic, old_ref)) = replaced {
            self.pending
                .push_back(frame::encode_close(self.vsn, &old_ref, &topic));
        }
        None
    }

    /// Await a join inside the socket task (so its reply precedes anything queued for it),
    /// catching a panic, and giving way to a close request. The wire is read meanwhile (up
    /// to [`DEFER_DURING_JOIN`] frames, kept in `deferred`), so a client that hangs up or
    /// closes during a slow join (a snapshot waiting its turn) cancels it.
    async fn await_join<W: Wire>(
        shared: &SocketShared,
        ws: &mut W,
        deferred: &mut VecDeque<Message>,
        future: BoxFuture<JoinResult>,
    ) -> Result<std::thread::Result<JoinResult>, JoinCancelled> {
        let mut future = AssertUnwindSafe(future).catch_unwind();
        poll_fn(|cx| {
            shared.register(cx.waker());
            if let Some(code) = shared.requested_close() {
                return Poll::Ready(Err(JoinCancelled::End(End::Close(code))));
            }
            if let Poll::Ready(result) = future.poll_unpin(cx) {
                return Poll::Ready(Ok(result));
            }
            while deferred.len() < DEFER_DURING_JOIN {
                match ws.poll_inbound(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Inbound::Message(msg)) => {
                        let closing = matches!(msg, Message::Close(_));
                        deferred.push_back(msg);
                        if closing {
                            return Poll::Ready(Err(JoinCancelled::PeerClosing));
                        }
                    }
                    Poll::Ready(Inbound::Gone) => {
                        return Poll::Ready(Err(JoinCancelled::End(End::Gone)))
                    }
                    // A slow consumer is logged when the socket is released.
                    Poll::Ready(Inbound::Failed(1013, _)) => {
                        return Poll::Ready(Err(JoinCancelled::End(End::Close(1013))))
                    }
                    Poll::Ready(Inbound::Failed(code, error)) => {
                        tracing::warn!(%error, code, "unreadable client input during a join, closing socket");
                        return Poll::Ready(Err(JoinCancelled::End(End::Close(code))));
                    }
                }
            }
            Poll::Pending
        })
        .await
    }

    fn leave(&mut self, m: InMessage) {
        match self.position(&m.topic) {
            // Not joined: ok, echoing the frame's join_ref, and no phx_close.
            None => self.reply_json(&m.join_ref, &m.reference, &m.topic, "ok", json!({})),
            // A stale leave raced a server-side close: ignored.
            Some(idx) if !self.accepts(idx, &m.join_ref) => {}
            Some(idx) => {
                let channel_ref = self.joined[idx].channel_ref.clone();
                let (topic, join_ref) = self.unjoin(idx);
                self.reply_json(&channel_ref, &m.reference, &topic, "ok", json!({}));
                self.pending
                    .push_back(frame::encode_close(self.vsn, &join_ref, &topic));
            }
        }
    }

    fn event(&mut self, m: InMessage) {
        let Some(idx) = self.position(&m.topic) else {
            let reason = json!({"reason": "unmatched topic"});
            return self.reply_json(&Value::Null, &m.reference, &m.topic, "error", reason);
        };
        if !self.accepts(idx, &m.join_ref) {
            return;
        }
        let joined = &mut self.joined[idx];
        let join_id = joined.outbox.join_id();
        let (channel, outbox) = (&mut joined.channel, &joined.outbox);
        let reply = std::panic::catch_unwind(AssertUnwindSafe(|| {
            channel.handle_in(&m.event, m.payload, outbox)
        }))
        .unwrap_or_else(|_| {
            tracing::warn!(peer = %self.peer, topic = %m.topic, "channel panicked");
            Reply::Crash
        });
        self.drain_queue();
        // The channel may have crashed itself through its outbox meanwhile.
        let Some(idx) = self.position_of_join(join_id) else {
            return;
        };
        let channel_ref = self.joined[idx].channel_ref.clone();
        match reply {
            Reply::Status(status, payload) => {
                self.reply(&channel_ref, &m.reference, &m.topic, &status, &payload)
            }
            Reply::NoReply => {}
            Reply::Stop(last) => {
                if let Some((status, payload)) = last {
                    self.reply(&channel_ref, &m.reference, &m.topic, &status, &payload);
                }
                let (topic, join_ref) = self.unjoin(idx);
                self.pending
                    .push_back(frame::encode_close(self.vsn, &join_ref, &topic));
            }
            Reply::Crash => {
                let (topic, join_ref) = self.unjoin(idx);
                self.pending
                    .push_back(frame::encode_error(self.vsn, &join_ref, &topic));
            }
        }
    }

    /// Drop every channel (ending their subscriptions) and everything not yet sent. The socket
    /// stays counted as open until it is dropped.
    pub(crate) fn release(&mut self, end: &End) {
        self.slot.shared.close_queue();
        for joined in self.joined.drain(..) {
            joined.outbox.end();
        }
        self.pending.clear();
        if let End::Close(1013) = end {
            self.slot
                .endpoint
                .metrics
                .slow_closed
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(peer = %self.peer, "slow consumer: outbound queue full (messages or pongs), closing socket with 1013");
        }
    }

    /// End a WebSocket: release the socket, and for a server-initiated close send the close
    /// frame (after what the client has not read yet), hang up our side and let the client
    /// finish, each bounded in time.
    async fn finish(mut self, mut ws: WsWire, end: End) {
        self.release(&end);
        match end {
            // The client closed: what is still queued (tungstenite's close reply last) goes out.
            End::Gone if ws.has_queued() => {
                let _ = tokio::time::timeout(CLOSE_WRITE_GRACE, ws.write_all()).await;
            }
            End::Gone => {}
            End::Close(code) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: "".into(),
                };
                let _ = tokio::time::timeout(CLOSE_WRITE_GRACE, ws.close(frame)).await;
                let _ = tokio::time::timeout(CLOSE_DRAIN_GRACE, async {
                    let io = ws.io();
                    let _ = io.shutdown().await;
                    let mut sink = [0u8; 512];
                    while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        }
    }
}
