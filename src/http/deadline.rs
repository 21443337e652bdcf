//! The request body every route reads, with the edge's deadline (`limits.body_seconds`): a
//! client that starts a body and never finishes it holds a connection, its buffers and the
//! task reading it for that long at most, whatever the route. Named after hyper's `Incoming`
//! so routes read the same; only `handle` wraps hyper's body in it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// A request body that fails with [`BodyError::TimedOut`] once its deadline passes while the
/// route still waits for it.
pub struct Incoming {
    inner: hyper::body::Incoming,
    deadline: Instant,
    /// Armed the first time the route has to wait for the client, so a request whose body is
    /// already here (or a GET) never touches the timer wheel.
    timer: Option<Pin<Box<Sleep>>>,
    /// Set when the deadline cut the body off; the edge then answers 408 whatever the route
    /// made of the error.
    expired: Arc<AtomicBool>,
}

impl Incoming {
    /// Wrap `inner`, due `within` from now; `expired` is set if the deadline cuts it off.
    pub fn new(
        inner: hyper::body::Incoming,
        within: Duration,
        expired: Arc<AtomicBool>,
    ) -> Incoming {
        let now = Instant::now();
        Incoming {
            inner,
            deadline: now
                .checked_add(within)
                .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600)),
            timer: None,
            expired,
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// The connection failed or the body was malformed.
    Read(hyper::Error),
    /// The client did not send the whole body within `limits.body_seconds`.
    TimedOut,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Read(e) => write!(f, "{e}"),
            BodyError::TimedOut => f.write_str("the request body did not arrive in time"),
        }
    }
}

impl std::error::Error for BodyError {}

impl Body for Incoming {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Read)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired.store(true, Ordering::Release);
                Poll::Ready(Some(Err(BodyError::TimedOut)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
