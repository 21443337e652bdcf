//! The WebSocket wire. tungstenite reads and parses what the client sends (and answers its
//! pings and close); the frames the server sends are written here, straight from the bytes
//! of each message with vectored writes. A broadcast's payload is one shared buffer, so a
//! frame sent to 10 000 sockets is never copied per socket (only its 2–10 byte header is
//! built per socket), and a socket keeps no write buffer between bursts: a menu screen does not
//! hold on to a copy of the last 600 KB menu.
//!
//! tungstenite never writes to the connection itself. Its own frames (pong, close) land in
//! the [`Tap`]'s `control` buffer and are queued here as whole frames, after the frames
//! already waiting, so the byte stream always consists of whole frames.
//!
//! Over TCP the connection is shared ([`SharedTcp`]) with a [`DirectWriter`]: while the socket
//! task has nothing waiting to be written, the fan-out writes a broadcast straight to the
//! connection (one non-blocking `sendmsg`, no task wake-up), under the lock of the socket's
//! outbound queue (see [`super::outbox::SocketShared`] for the hand-over rules).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::frame::Vsn;
use super::outbox::Broadcast;
use super::socket::{Inbound, Wire};

/// `poll_ready` says "not now" once this many bytes wait to be written: the socket then stops
/// taking frames off its outbound queue, and a client that does not read ends as a slow
/// consumer (1013) when that queue is full. Queued frames share their payloads, so this bounds
/// the socket's own memory only loosely; it is about how much a writev may carry.
const QUEUED_BYTES_HIGH: usize = 64 * 1024;
/// Frames handed to one `writev`.
const MAX_IOVECS: usize = 64;
/// tungstenite's own frames (pongs) waiting beyond this are refused until some are written;
/// tungstenite then keeps only the latest pong, so a ping flood cannot grow memory. It is also
/// the most tungstenite may buffer itself (its write buffer is otherwise unbounded, and a pong
/// per ping piled up there while the client did not read).
const CONTROL_HIGH: usize = 4 * 1024;
/// A drained queue keeps at most this much room (frames); a burst's larger allocation is freed.
const IDLE_QUEUE_CAPACITY: usize = 4;
/// Broadcasts larger than this are not written by the [`DirectWriter`] but queued: the fan-out
/// writes under the registry's lock, and copying a 600 KB menu into 200 sockets' buffers there
/// would hold it for tens of milliseconds (the socket tasks copy it in parallel instead). An
/// order's change is about a kilobyte.
const DIRECT_MAX_BYTES: usize = 64 * 1024;

/// The connection as tungstenite sees it: reads go to the socket, writes are collected.
pub(crate) struct Tap<S> {
    io: S,
    /// Whole frames tungstenite wrote (it writes a frame at a time, and every write is taken
    /// whole), to be queued behind the server's frames.
    control: Vec<u8>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.control.len() >= CONTROL_HIGH {
            // tungstenite treats this as "would block" and tries again on a later read or
            // flush; the socket task is polled again as soon as the connection takes bytes.
            return Poll::Pending;
        }
        self.control.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One frame waiting to be written: its header, built for this socket, and its payload,
/// shared with every other socket sending the same message.
pub(crate) struct OutFrame {
    head: [u8; 10],
    head_len: u8,
    payload: Bytes,
}

impl OutFrame {
    fn data(opcode: Data, payload: Bytes) -> OutFrame {
        let header = FrameHeader {
            opcode: OpCode::Data(opcode),
            ..FrameHeader::default()
        };
        let mut head = [0u8; 10];
        let mut cursor = io::Cursor::new(&mut head[..]);
        // An unmasked header is at most 10 bytes, so formatting into 10 cannot fail.
        let head_len = match header.format(payload.len() as u64, &mut cursor) {
            Ok(()) => cursor.position() as u8,
            Err(_) => 0,
        };
        OutFrame {
            head,
            head_len,
            payload,
        }
    }

    /// Bytes tungstenite wrote (one or more whole frames), sent as they are.
    fn raw(bytes: Bytes) -> OutFrame {
        OutFrame {
            head: [0; 10],
            head_len: 0,
            payload: bytes,
        }
    }

    fn len(&self) -> usize {
        self.head_len as usize + self.payload.len()
    }
}

/// The connection of an upgraded WebSocket: TCP shared with a [`DirectWriter`] when hyper hands
/// the stream over as one, anything else (a test's pipe) as it is.
pub(crate) enum Conn {
    Tcp(SharedTcp),
    Other(TokioIo<Upgraded>),
}

impl Conn {
    /// The upgraded connection, with a [`DirectWriter`] for broadcasts when it is TCP.
    pub(crate) fn new(
        upgraded: Upgraded,
        vsn: Vsn,
        sent: Arc<dyn CountSent>,
    ) -> (Conn, Option<DirectWriter>) {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let tcp = Arc::new(parts.io.into_inner());
                let writer = DirectWriter {
                    tcp: Arc::clone(&tcp),
                    vsn,
                    sent,
                };
                // A copy: hyper's `read_buf` shares (and would keep) its whole read buffer.
                let conn = SharedTcp {
                    tcp,
                    early: Bytes::copy_from_slice(&parts.read_buf),
                };
                (Conn::Tcp(conn), Some(writer))
            }
            Err(upgraded) => (Conn::Other(TokioIo::new(upgraded)), None),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Conn::Other(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Conn::Other(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Conn::Other(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Conn::Other(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Conn::Other(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// A WebSocket's TCP stream as its socket task sees it: the same stream a [`DirectWriter`]
/// writes to (never at the same time, see [`super::outbox::SocketShared`]).
pub(crate) struct SharedTcp {
    tcp: Arc<TcpStream>,
    /// Bytes hyper read past the upgrade request (a client's first frames): read first.
    early: Bytes,
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early[..n]);
            self.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            match self.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was cleared: the next poll registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The stream is shared with the direct writer, so tokio's own `poll_shutdown` (which
        // takes it by `&mut`) is out of reach; shutdown(2) itself needs only the descriptor.
        Poll::Ready(SockRef::from(&*self.tcp).shutdown(std::net::Shutdown::Write))
    }
}

/// Counts what a [`DirectWriter`] sends into its endpoint's metrics, as the socket task counts
/// what it sends: before it is written (a client that has it may look at the metrics at once).
pub(crate) trait CountSent: Send + Sync {
    fn count_sent(&self, payload_bytes: usize);
    /// Take back a count for a message that was not written after all (the socket task counts
    /// it when it sends it).
    fn uncount_sent(&self, payload_bytes: usize);
}

/// Writes broadcasts straight to a WebSocket's TCP stream, from the fan-out.
pub(crate) struct DirectWriter {
    /// The stream, written with `sendmsg(2)` on its descriptor rather than through tokio's
    /// registration (whose readiness the socket task still keeps: a stale "writable" there
    /// only costs it one `WouldBlock`).
    tcp: Arc<TcpStream>,
    vsn: Vsn,
    sent: Arc<dyn CountSent>,
}

/// What a [`DirectWriter`] got onto the connection.
pub(crate) enum Wrote {
    /// The whole frame.
    All,
    /// Part of it: the socket task writes the rest ([`Wire::resume`]) before anything else.
    Part(Remainder),
    /// Nothing (the connection would block, or failed): the broadcast is queued as usual.
    Nothing,
}

/// The unwritten rest of a frame a [`DirectWriter`] started.
pub(crate) struct Remainder {
    frame: OutFrame,
    written: usize,
}

impl DirectWriter {
    /// Write `msg` without waiting: one `sendmsg` of its header and its shared payload.
    pub(crate) fn write(&self, msg: &Broadcast) -> Wrote {
        let frame = match msg.encoded(self.vsn) {
            Message::Text(text) => OutFrame::data(Data::Text, Bytes::from(text)),
            Message::Binary(data) => OutFrame::data(Data::Binary, data),
            _ => return Wrote::Nothing,
        };
        if frame.len() > DIRECT_MAX_BYTES {
            return Wrote::Nothing;
        }
        let slices = [
            IoSlice::new(&frame.head[..frame.head_len as usize]),
            IoSlice::new(&frame.payload),
        ];
        self.sent.count_sent(frame.payload.len());
        // An error other than "would block" is left to the socket task, which meets it on its
        // own next write of the queued broadcast.
        // sendmsg(2) rather than writev(2): a socket's own call skips the file layer, and
        // MSG_NOSIGNAL keeps a vanished client from raising SIGPIPE.
        let written = SockRef::from(&*self.tcp)
            .send_vectored_with_flags(&slices, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            .unwrap_or(0);
        if written == 0 {
            self.sent.uncount_sent(frame.payload.len());
            return Wrote::Nothing;
        }
        if written == frame.len() {
            Wrote::All
        } else {
            Wrote::Part(Remainder { frame, written })
        }
    }
}

/// The WebSocket transport of one socket (over the upgraded HTTP connection; any stream in
/// tests).
pub(crate) struct WsWire<S = Conn> {
    ws: WebSocketStream<Tap<S>>,
    out: VecDeque<OutFrame>,
    /// Bytes of the first frame in `out` already written.
    written: usize,
    queued_bytes: usize,
    /// Pings read since the queue was last written out completely: pongs owed to a client that
    /// is not reading. They count against the socket's outbound bound like queued messages.
    owed_pongs: usize,
    /// How many owed pongs make the socket a slow consumer (the endpoint's `outbound_queue`).
    max_owed_pongs: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsWire<S> {
    /// A wire over `io`; a client owing more than `max_owed_pongs` pongs is a slow consumer.
    pub(crate) async fn new(io: S, config: WebSocketConfig, max_owed_pongs: usize) -> WsWire<S> {
        let tap = Tap {
            io,
            control: Vec::new(),
        };
        // tungstenite hands every frame it writes to the tap at once and buffers at most
        // CONTROL_HIGH itself; past that it keeps just the latest pong.
        let config = config
            .write_buffer_size(0)
            .max_write_buffer_size(CONTROL_HIGH);
        WsWire {
            ws: WebSocketStream::from_raw_socket(tap, Role::Server, Some(config)).await,
            out: VecDeque::new(),
            written: 0,
            queued_bytes: 0,
            owed_pongs: 0,
            max_owed_pongs: max_owed_pongs.max(1),
        }
    }

    fn push(&mut self, frame: OutFrame) {
        self.queued_bytes += frame.len();
        self.out.push_back(frame);
    }

    /// Queue what tungstenite wrote since last time, behind the frames already waiting, unless
    /// the client is not reading what is queued already: tungstenite's answers then wait in the
    /// tap (bounded), so a client that sends pings and never reads cannot grow the queue.
    fn take_control(&mut self) {
        if self.queued_bytes < QUEUED_BYTES_HIGH {
            self.force_control();
        }
    }

    /// Queue what tungstenite wrote, however much is queued (the close frame must go out).
    fn force_control(&mut self) {
        let tap = self.ws.get_mut();
        if !tap.control.is_empty() {
            let bytes = Bytes::from(std::mem::take(&mut tap.control));
            self.push(OutFrame::raw(bytes));
        }
    }

    /// Write queued frames until all are out (`Ready(Ok)`) or the connection would block.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        // Lets tungstenite hand over an answer it holds back (a pong, a close reply). Errors
        // here only say the WebSocket is closing; writing what is queued still matters.
        let _ = self.ws.poll_flush_unpin(cx);
        loop {
            self.take_control();
            if self.out.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            let mut skip = self.written;
            'frames: for frame in &self.out {
                for part in [&frame.head[..frame.head_len as usize], &frame.payload[..]] {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    if count == MAX_IOVECS {
                        break 'frames;
                    }
                    slices[count] = IoSlice::new(&part[skip..]);
                    count += 1;
                    skip = 0;
                }
            }
            let io = &mut self.ws.get_mut().io;
            let n = match Pin::new(io).poll_write_vectored(cx, &slices[..count]) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(WsError::Io(e))),
                Poll::Ready(Ok(0)) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "connection closed");
                    return Poll::Ready(Err(WsError::Io(e)));
                }
                Poll::Ready(Ok(n)) => n,
            };
            self.advance(n);
        }
        if self.out.capacity() > IDLE_QUEUE_CAPACITY {
            self.out.shrink_to(IDLE_QUEUE_CAPACITY);
        }
        if self.ws.get_ref().control.is_empty() {
            // Everything the client was owed has reached the connection.
            self.owed_pongs = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Drop the first `n` written bytes from the queue.
    fn advance(&mut self, mut n: usize) {
        self.queued_bytes -= n;
        while let Some(front) = self.out.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.out.pop_front();
        }
    }

    /// Send a close frame after everything queued (tungstenite records that we closed, so it
    /// answers the client's close correctly), and write it all out.
    pub(crate) async fn close(&mut self, frame: CloseFrame) -> Result<(), WsError> {
        // Room for the close frame: tungstenite's pending pongs move to the queue first.
        self.force_control();
        match self.ws.send(Message::Close(Some(frame))).await {
            Ok(()) | Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {}
            Err(e) => return Err(e),
        }
        self.force_control();
        self.write_all().await
    }

    /// Write whatever is still queued (our frames, tungstenite's pong or close reply).
    pub(crate) async fn write_all(&mut self) -> Result<(), WsError> {
        std::future::poll_fn(|cx| self.poll_write_out(cx)).await
    }

    /// Whether anything waits to be written, tungstenite's answers included.
    pub(crate) fn has_queued(&mut self) -> bool {
        self.take_control();
        !self.out.is_empty()
    }

    /// The connection itself, for the last steps of a close (shutdown, read to the end).
    pub(crate) fn io(&mut self) -> &mut S {
        &mut self.ws.get_mut().io
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire for WsWire<S> {
    const IDLE_TIMEOUT: bool = true;

    fn drained(&mut self) -> bool {
        self.out.is_empty() && self.ws.get_ref().control.is_empty()
    }

    fn resume(&mut self, rest: Remainder) {
        // The rest goes before anything else. Nothing of ours was waiting when the connection
        // was handed to the direct writer (`drained`), so no other frame is half written.
        debug_assert_eq!(self.written, 0);
        let Remainder { frame, written } = rest;
        self.queued_bytes += frame.len() - written;
        self.out.push_front(frame);
        self.written = written;
    }

    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Inbound> {
        let polled = self.ws.poll_next_unpin(cx);
        // Reading may have made tungstenite answer (a pong): send it now, not at the next write.
        if !self.ws.get_ref().control.is_empty() {
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                tracing::debug!(error = %e, "could not write a control frame");
            }
        }
        polled.map(|item| match item {
            None => Inbound::Gone,
            Some(Ok(Message::Ping(_))) if self.owed_pongs >= self.max_owed_pongs => {
                // A client that pings and does not read what it is sent: answering costs
                // memory and CPU for nothing, as a broadcast it never reads would.
                Inbound::Failed(1013, "pongs owed past the outbound bound".into())
            }
            Some(Ok(msg)) => {
                if matches!(msg, Message::Ping(_)) {
                    self.owed_pongs += 1;
                }
                Inbound::Message(msg)
            }
            Some(Err(e)) => {
                let code = match &e {
                    WsError::Utf8(_) => 1007,
                    WsError::Capacity(_) => 1009,
                    WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                        return Inbound::Gone
                    }
                    WsError::Protocol(_) => 1002,
                    _ => return Inbound::Gone,
                };
                Inbound::Failed(code, e.to_string())
            }
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsWire<S> {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if self.queued_bytes < QUEUED_BYTES_HIGH {
            return Poll::Ready(Ok(()));
        }
        match self.poll_write_out(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ if self.queued_bytes < QUEUED_BYTES_HIGH => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    }

    /// Data frames are queued here; anything else (the socket never sends it but through
    /// [`WsWire::close`]) is refused.
    fn start_send(mut self: Pin<&mut Self>, msg: Message) -> Result<(), WsError> {
        let frame = match msg {
            Message::Text(text) => OutFrame::data(Data::Text, Bytes::from(text)),
            Message::Binary(data) => OutFrame::data(Data::Binary, data),
            _ => return Err(WsError::Io(io::Error::other("control frame outside close"))),
        };
        self.take_control();
        self.push(frame);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.poll_write_out(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.poll_write_out(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    async fn pair(buffer: usize) -> (WsWire<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(buffer);
        let wire = WsWire::new(server, WebSocketConfig::default(), 1024).await;
        let client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        (wire, client)
    }

    #[test]
    fn headers_match_tungstenite_framing() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 1 << 20] {
            let frame = OutFrame::data(Data::Text, Bytes::from(vec![b'x'; len]));
            let mut ours = frame.head[..frame.head_len as usize].to_vec();
            ours.extend_from_slice(&frame.payload);
            let mut theirs = Vec::new();
            let reference = Frame::message(vec![b'x'; len], OpCode::Data(Data::Text), true);
            reference.format(&mut theirs).expect("format");
            assert_eq!(ours, theirs, "payload of {len} bytes");
        }
    }

    /// Frames written in many partial writes (a 1 KiB pipe) reach a real tungstenite client
    /// whole and in order, and the drained queue gives its room back.
    #[tokio::test]
    async fn frames_arrive_whole_through_partial_writes() {
        let (mut wire, mut client) = pair(1024).await;
        let shared = Bytes::from(vec![b'm'; 300_000]);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(Ok(msg)) = client.next().await {
                got.push(msg);
                if got.len() == 402 {
                    break;
                }
            }
            got
        });
        for i in 0..400 {
            wire.feed(Message::text(format!("frame {i}")))
                .await
                .expect("feed");
        }
        wire.feed(Message::Binary(shared.clone()))
            .await
            .expect("feed");
        wire.send(Message::text("last")).await.expect("send");
        assert!(
            wire.out.capacity() <= IDLE_QUEUE_CAPACITY,
            "room given back"
        );
        let got = reader.await.expect("reader");
        for (i, msg) in got.iter().take(400).enumerate() {
            assert_eq!(msg, &Message::text(format!("frame {i}")));
        }
        assert_eq!(got[400], Message::Binary(shared));
        assert_eq!(got[401], Message::text("last"));
    }

    /// A client that sends pings and never reads: the answers queued on its behalf stay
    /// bounded however many pings it sends, and once it owes more pongs than the bound it is
    /// a slow consumer (1013).
    #[tokio::test]
    async fn ping_flood_from_a_client_that_never_reads_stays_bounded() {
        let (mut wire, mut client) = pair(4096).await;
        let pinger = tokio::spawn(async move {
            for _ in 0..3000 {
                client
                    .send(Message::Ping(Bytes::from(vec![b'p'; 100])))
                    .await?;
            }
            Ok::<_, WsError>(client)
        });
        let mut pings = 0;
        loop {
            match std::future::poll_fn(|cx| wire.poll_inbound(cx)).await {
                Inbound::Message(Message::Ping(_)) => pings += 1,
                Inbound::Failed(1013, _) => break,
                _ => panic!("only pings were sent"),
            }
            assert!(
                pings <= 1024 + 64,
                "{pings} pings answered to a client not reading"
            );
            let control = wire.ws.get_ref().control.len();
            assert!(control <= CONTROL_HIGH + 128, "tap holds {control} bytes");
            assert!(
                wire.queued_bytes <= QUEUED_BYTES_HIGH + CONTROL_HIGH + 128,
                "queue holds {} bytes",
                wire.queued_bytes
            );
        }
        pinger.abort();
    }
}
