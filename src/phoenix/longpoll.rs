//! The LongPoll transport (`/socket/longpoll`), as Phoenix 1.8 serves it, for clients whose
//! network blocks WebSockets (the official client's `longPollFallbackMs`). A session is a socket
//! like any other — the same state machine (`socket.rs`), outbound queue and limits — whose
//! `Wire` is a pair of buffers: POSTs feed client frames in, polls (GETs) take server frames
//! out. Every answer is HTTP 200 with a JSON envelope; the logical status is in the body.
//!
//! Differences from a WebSocket, all as in Phoenix: no heartbeats and no idle timeout (a
//! session ends when no poll arrived for [`LongPollConfig::inactivity`]); text frames only
//! (a binary frame for the client cannot be carried and is dropped).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::Sink;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use serde::Serialize;
use tokio::sync::{oneshot, Notify};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

mod body;

pub use body::{decode_post_body, PostedFrame, MAX_BATCH_LINES};

use super::outbox::SocketShared;
use super::socket::{Inbound, Socket, Wire};
use super::transport::{parse_query, Endpoint, Refusal};
use super::SocketHandler;

/// What a LongPoll request's body may be: any HTTP body of bytes (the server's, with its own
/// deadline; a test's).
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
{
}

/// A POST body may hold this many maximum-size frames' worth of bytes.
const BODY_LIMIT_FRAMES: usize = 16;

/// The session token header (checked before the `token` query parameter; Phoenix 1.8.10+).
const TOKEN_HEADER: &str = "x-phoenix-longpoll-token";

/// The header the official client sends its `authToken` in over LongPoll.
const AUTH_TOKEN_HEADER: &str = "x-phoenix-authtoken";

/// Timings of the LongPoll transport; replaceable while running
/// ([`Endpoint::set_long_poll_config`]), read when a request or session starts.
#[derive(Debug, Clone)]
pub struct LongPollConfig {
    /// How long a poll waits for frames before answering 204, and a POST for its frames to be
    /// handled before answering 408 (Phoenix: 10 s).
    pub window: Duration,
    /// A session with no poll for this long ends (Phoenix: 1.5 × the window). Checked every
    /// third of it, so a dead session goes away within 4/3 of this.
    pub inactivity: Duration,
}

impl Default for LongPollConfig {
    fn default() -> Self {
        LongPollConfig {
            window: Duration::from_secs(10),
            inactivity: Duration::from_secs(15),
        }
    }
}

/// The endpoint's long-poll sessions by token, and the transport's settings.
pub(crate) struct LongPolls {
    config: RwLock<Arc<LongPollConfig>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl LongPolls {
    pub(crate) fn new() -> Self {
        LongPolls {
            config: RwLock::new(Arc::new(LongPollConfig::default())),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live session holding `token`.
    fn find(&self, token: &str) -> Option<Arc<Session>> {
        self.lock()
            .get(token)
            .filter(|s| !s.lock().ended)
            .map(Arc::clone)
    }
}

/// What a session's socket task shares with the HTTP requests that carry its traffic.
struct Session {
    token: String,
    /// The socket's shared state: waking its task after a POST or a poll, closing it.
    socket: Arc<SocketShared>,
    state: Mutex<State>,
    /// Signalled when frames for the client arrive or the session ends (wakes polls).
    to_client: Notify,
    /// One POST at a time, as the official client sends them; bounds `incoming`.
    posting: tokio::sync::Mutex<()>,
}

struct State {
    /// Frames written by the socket, waiting for the next poll.
    outgoing: Vec<Utf8Bytes>,
    /// Frames posted by the client and not yet read by the socket.
    incoming: VecDeque<Posted>,
    /// Polls in progress; a session being polled is never reaped.
    polls: usize,
    /// When a poll last started or ended.
    last_poll: Instant,
    /// The socket task has finished; nothing more goes in or out.
    ended: bool,
}

/// A posted frame, and for the last line of a POST the sender that answers that POST.
struct Posted {
    frame: PostedFrame,
    ack: Option<oneshot::Sender<()>>,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A poll's answer if there is one now: the frames waiting (200), or 204 once the session
    /// has ended with nothing left.
    fn take_outgoing(&self) -> Option<HttpResponse> {
        let mut state = self.lock();
        if !state.outgoing.is_empty() {
            let frames = std::mem::take(&mut state.outgoing);
            drop(state);
            // The socket may be waiting for room to write.
            self.socket.wake();
            return Some(messages(200, &self.token, &frames));
        }
        state.ended.then(|| messages(204, &self.token, &[]))
    }

    /// The socket task has finished: drop what was posted (those POSTs answer 410) and let
    /// polls answer with what is left.
    fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        state.incoming.clear();
        drop(state);
        self.to_client.notify_waiters();
    }
}

/// A session's side of the socket state machine: reads what POSTs left in `incoming`, writes
/// into `outgoing` for polls to take, and ends the session when nobody polls any more.
struct SessionWire {
    session: Arc<Session>,
    /// The answer to the POST whose last line the socket read last; sent once the socket asks
    /// for more input, i.e. once that line has been handled.
    handled: Option<oneshot::Sender<()>>,
    /// At most this many frames wait for a poll; then the socket stops writing, its queue fills
    /// up and a slow consumer's session ends as a WebSocket's would (1013).
    max_outgoing: usize,
    /// Wrote frames that polls have not been told about yet.
    unannounced: bool,
    inactivity: Duration,
    reaper: Pin<Box<Sleep>>,
}

impl Wire for SessionWire {
    const IDLE_TIMEOUT: bool = false;

    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Poll<Inbound> {
        if let Some(handled) = self.handled.take() {
            let _ = handled.send(());
        }
        self.session.socket.register(cx.waker());
        if let Some(posted) = self.session.lock().incoming.pop_front() {
            self.handled = posted.ack;
            return Poll::Ready(match posted.frame {
                PostedFrame::Text(text) => Inbound::Message(Message::text(text)),
                PostedFrame::Binary(data) => Inbound::Message(Message::Binary(data)),
                PostedFrame::Invalid { code, reason } => Inbound::Failed(code, reason.into()),
            });
        }
        match self.poll_abandoned(cx) {
            true => Poll::Ready(Inbound::Gone),
            false => Poll::Pending,
        }
    }
}

impl SessionWire {
    fn reaper_period(inactivity: Duration) -> Duration {
        (inactivity / 3).max(Duration::from_millis(10))
    }

    /// Whether nobody has polled for the inactivity period (checked when the reaper's timer
    /// fires). Asked both for input and, when polls do not take output, for room to write, so
    /// that a session whose client left is reaped even while the socket is not reading.
    fn poll_abandoned(&mut self, cx: &mut Context<'_>) -> bool {
        while self.reaper.as_mut().poll(cx).is_ready() {
            let state = self.session.lock();
            if state.polls == 0 && state.last_poll.elapsed() >= self.inactivity {
                tracing::debug!("long-poll session ended: no poll for {:?}", self.inactivity);
                return true;
            }
            drop(state);
            let next = Instant::now() + Self::reaper_period(self.inactivity);
            self.reaper.as_mut().reset(next);
        }
        false
    }
}

impl Sink<Message> for SessionWire {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.session.socket.register(cx.waker());
        if self.session.lock().outgoing.len() < self.max_outgoing {
            Poll::Ready(Ok(()))
        } else if self.poll_abandoned(cx) {
            // Ends the socket loop like a failed write: the client is gone.
            Poll::Ready(Err(WsError::AlreadyClosed))
        } else {
            Poll::Pending
        }
    }

    fn start_send(mut self: Pin<&mut Self>, msg: Message) -> Result<(), WsError> {
        match msg {
            Message::Text(text) => {
                self.session.lock().outgoing.push(text);
                self.unannounced = true;
            }
            // LongPoll carries text only (Phoenix's transport supports only the text opcode);
            // binary replies, pushes and broadcasts cannot reach a long-poll client.
            Message::Binary(_) => {
                tracing::debug!("binary frame dropped: LongPoll carries text frames only");
            }
            _ => {}
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if std::mem::take(&mut self.unannounced) {
            self.session.to_client.notify_waiters();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.poll_flush(cx)
    }
}

/// The session token of a request: the header first, else the last `token` query value (a
/// socket param named `token` comes earlier in the client's URL).
fn session_token(headers: &HeaderMap, query: &str) -> Option<String> {
    let from_header = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    from_header.or_else(|| parse_query(query).remove("token").filter(|t| !t.is_empty()))
}

/// What every session token starts with, so that a dead session's token is told apart from a
/// socket param named `token` (a user's credential) even after a restart.
const SESSION_TOKEN_PREFIX: &str = "lp.";

fn new_token() -> String {
    let random = rand::random::<[u8; 32]>();
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random);
    format!("{SESSION_TOKEN_PREFIX}{encoded}")
}

/// Whether `token` has the shape of a session token this transport hands out.
fn is_session_token(token: &str) -> bool {
    token
        .strip_prefix(SESSION_TOKEN_PREFIX)
        .is_some_and(|rest| {
            rest.len() == 43
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `query` without the `token` parameters whose value is `token`.
fn without_param(query: &str, token: &str) -> String {
    query
        .split('&')
        .filter(|segment| {
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            !(key == "token"
                && parse_query(&format!("v={value}"))
                    .get("v")
                    .map(String::as_str)
                    == Some(token))
        })
        .collect::<Vec<_>>()
        .join("&")
}

type HttpResponse = hyper::Response<Full<Bytes>>;

/// HTTP 200 with the JSON envelope and the headers every LongPoll answer carries.
fn envelope(body: &Envelope<'_>) -> HttpResponse {
    // Serializing strings and numbers cannot fail.
    let json = serde_json::to_vec(body).unwrap_or_default();
    let mut response = hyper::Response::new(Full::new(Bytes::from(json)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    cors(headers);
    response
}

/// The JSON body of every LongPoll answer; frames are written as JSON strings without being
/// copied into a `serde_json::Value` first.
#[derive(Serialize)]
struct Envelope<'a> {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<&'a str>>,
}

fn cors(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
}

fn status(code: u16) -> HttpResponse {
    envelope(&Envelope {
        status: code,
        token: None,
        messages: None,
    })
}

fn messages(code: u16, token: &str, frames: &[Utf8Bytes]) -> HttpResponse {
    envelope(&Envelope {
        status: code,
        token: Some(token),
        messages: Some(frames.iter().map(Utf8Bytes::as_str).collect()),
    })
}

/// `OPTIONS`: the CORS preflight, allowing whatever headers were asked for.
fn preflight(request: &HeaderMap) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    let headers = response.headers_mut();
    cors(headers);
    if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("get, post, options"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("3600"),
    );
    response
}

/// A poll in progress: keeps its session from being reaped, also when the client hangs up.
struct PollGuard<'a>(&'a Session);

impl<'a> PollGuard<'a> {
    fn new(session: &'a Session) -> Self {
        let mut state = session.lock();
        state.polls += 1;
        state.last_poll = Instant::now();
        PollGuard(session)
    }
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.polls -= 1;
        state.last_poll = Instant::now();
    }
}

/// A poll that found nothing to take and waits: counted in [`super::Metrics::waiting_polls`]
/// until it answers or its client hangs up.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<H: SocketHandler> Endpoint<H> {
    /// Replace the LongPoll timings; requests and sessions started later use them.
    pub fn set_long_poll_config(&self, config: LongPollConfig) {
        let mut guard = self
            .long_polls
            .config
            .write()
            .unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(config);
    }

    /// The current LongPoll timings.
    pub fn long_poll_config(&self) -> Arc<LongPollConfig> {
        Arc::clone(
            &self
                .long_polls
                .config
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Answer a request for the LongPoll transport (`/socket/longpoll`): `GET` opens a session
    /// or polls it, `POST` sends it frames, `OPTIONS` is the CORS preflight, anything else 400.
    pub async fn long_poll<B: RequestBody>(
        self: &Arc<Self>,
        req: hyper::Request<B>,
        peer: SocketAddr,
    ) -> HttpResponse {
        let method = req.method().clone();
        if method == Method::OPTIONS {
            return preflight(req.headers());
        }
        if method != Method::GET && method != Method::POST {
            let mut response = hyper::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            cors(response.headers_mut());
            return response;
        }
        if !self.origin_ok(req.headers(), &self.config()) {
            tracing::warn!(%peer, origin = ?req.headers().get(header::ORIGIN), "refused long poll: origin");
            return status(403);
        }
        let query = req.uri().query().unwrap_or("").to_owned();
        let presented = session_token(req.headers(), &query);
        let session = presented.as_deref().and_then(|t| self.long_polls.find(t));
        match (method == Method::GET, session) {
            (true, Some(session)) => self.listen(&session).await,
            (true, None) => {
                // A dead session's token (expired, or from before a restart) opens a new
                // session, as in Phoenix; it is no credential, so `connect` does not see it.
                let query = match presented {
                    Some(token) if is_session_token(&token) => without_param(&query, &token),
                    _ => query,
                };
                self.open(req.headers(), &query, peer).await
            }
            (false, Some(session)) => self.publish(&session, req).await,
            (false, None) => status(410),
        }
    }

    /// A GET without a live session: admit a new socket as the WebSocket upgrade would and
    /// answer 410 with its token (the client's "open").
    async fn open(
        self: &Arc<Self>,
        headers: &HeaderMap,
        query: &str,
        peer: SocketAddr,
    ) -> HttpResponse {
        let auth_token = headers
            .get(AUTH_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let admitted = self.admit(headers, query, auth_token, peer).await;
        let (slot, user_session, vsn, config) = match admitted {
            Ok(admitted) => admitted,
            Err(Refusal::Forbidden) => return status(403),
            // The socket limit, or shutting down. Any status but 200/204/403/410/500 makes
            // the client throw; 500 makes it back off and retry, like a refused upgrade.
            Err(Refusal::Unavailable) => return status(500),
        };
        let lp = self.long_poll_config();
        let token = new_token();
        let session = Arc::new(Session {
            token: token.clone(),
            socket: Arc::clone(&slot.shared),
            state: Mutex::new(State {
                outgoing: Vec::new(),
                incoming: VecDeque::new(),
                polls: 0,
                last_poll: Instant::now(),
                ended: false,
            }),
            to_client: Notify::new(),
            posting: tokio::sync::Mutex::new(()),
        });
        let wire = SessionWire {
            session: Arc::clone(&session),
            handled: None,
            max_outgoing: config.outbound_queue.max(1),
            unannounced: false,
            inactivity: lp.inactivity,
            reaper: Box::pin(tokio::time::sleep(SessionWire::reaper_period(
                lp.inactivity,
            ))),
        };
        self.long_polls
            .lock()
            .insert(token.clone(), Arc::clone(&session));
        let socket = Socket::new(slot, user_session, vsn, peer);
        tokio::spawn(run_session(Arc::clone(self), socket, wire));
        messages(410, &token, &[])
    }

    /// A GET on a live session: answer at once with the frames waiting, else wait up to the
    /// window for some (200), then give up (204).
    async fn listen(&self, session: &Session) -> HttpResponse {
        let _polling = PollGuard::new(session);
        let deadline = Instant::now() + self.long_poll_config().window;
        let mut waiting = None;
        loop {
            let arrived = session.to_client.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(answer) = session.take_outgoing() {
                return answer;
            }
            waiting.get_or_insert_with(|| Waiting::new(&self.metrics.waiting_polls));
            tokio::select! {
                _ = arrived => continue,
                _ = tokio::time::sleep_until(deadline) => return messages(204, &session.token, &[]),
            }
        }
    }

    /// A POST on a live session: hand its frames to the socket and answer once the socket has
    /// handled them all (200), the session ended meanwhile (410), or the window passed (408).
    async fn publish<B: RequestBody>(
        &self,
        session: &Session,
        req: hyper::Request<B>,
    ) -> HttpResponse {
        let window = self.long_poll_config().window;
        let max_frame = self.config().max_message_bytes;
        let ndjson = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-ndjson"));
        let limit = max_frame.saturating_mul(BODY_LIMIT_FRAMES);
        let body = Limited::new(req.into_body(), limit).collect();
        let body = match tokio::time::timeout(window, body).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                tracing::warn!("long-poll body over {limit} bytes, ending the session with 1009");
                session.socket.request_close(1009);
                return status(410);
            }
            Ok(Err(_)) => return status(400),
            Err(_) => return status(408),
        };
        let frames = decode_post_body(&body, ndjson, max_frame);
        let Ok(_one_post) = tokio::time::timeout(window, session.posting.lock()).await else {
            return status(408);
        };
        let (handled_tx, handled) = oneshot::channel();
        {
            let mut state = session.lock();
            if state.ended {
                return status(410);
            }
            let last = frames.len().saturating_sub(1);
            let mut handled_tx = Some(handled_tx);
            for (i, frame) in frames.into_iter().enumerate() {
                let ack = if i == last { handled_tx.take() } else { None };
                state.incoming.push_back(Posted { frame, ack });
            }
            if let Some(nothing_posted) = handled_tx {
                let _ = nothing_posted.send(());
            }
        }
        session.socket.wake();
        match tokio::time::timeout(window, handled).await {
            Ok(Ok(())) => status(200),
            Ok(Err(_)) => status(410),
            Err(_) => {
                // Not read in time (the socket waits for polls to take its frames): drop the
                // rest, as this client starts over after a 408 anyway.
                session.lock().incoming.clear();
                status(408)
            }
        }
    }
}

/// A session's socket task: the state machine over the session's wire until the session ends
/// (close requested, malformed input, no polls), then the session is forgotten and the socket
/// unregistered, in that order, so that `close_all` returning means every token is dead.
async fn run_session<H: SocketHandler>(
    endpoint: Arc<Endpoint<H>>,
    mut socket: Socket<H>,
    mut wire: SessionWire,
) {
    let end = socket.serve(&mut wire).await;
    socket.release(&end);
    // Frames already written stay for a poll that is waiting now.
    let session = Arc::clone(&wire.session);
    drop(wire);
    session.end();
    endpoint.long_polls.lock().remove(&session.token);
    drop(socket);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_header_wins_over_the_last_query_token() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            session_token(&headers, "token=user&vsn=2.0.0&token=T").as_deref(),
            Some("T")
        );
        assert_eq!(session_token(&headers, "vsn=2.0.0&"), None);
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("H"));
        assert_eq!(session_token(&headers, "token=T").as_deref(), Some("H"));
    }

    #[test]
    fn tokens_are_long_distinct_and_recognisable() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 43, "256 bits in base64url");
        assert!(is_session_token(&a));
        assert!(!is_session_token("admin-secret"));
        assert!(!is_session_token("lp.short"));
    }

    #[test]
    fn a_dead_session_token_is_taken_out_of_the_connect_params() {
        let dead = new_token();
        let query = format!("token=user&vsn=2.0.0&token={dead}");
        assert_eq!(without_param(&query, &dead), "token=user&vsn=2.0.0");
    }
}
