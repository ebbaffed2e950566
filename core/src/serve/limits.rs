//! The global memory budget for client messages being received (`--max-frame-memory`).
//!
//! tungstenite buffers a whole message before handing it over, so N clients each sending a
//! 60 MB frame at once cost N × 60 MB. Each connection's socket is wrapped in a [`Metered`]
//! reader that charges every byte read to one shared [`FrameBudget`] until the session loop has
//! handled the message those bytes belong to ([`Meter::release`]). A read that takes the total
//! over the budget fails the connection that made it — unless that connection has less than
//! [`EXEMPT_BYTES`] pending, so small control events still get through when big ones fill the
//! budget — and the session loop answers with an `error` (`server_busy`) and close 1013.
//!
//! Back-pressure (pausing reads until the budget frees) would deadlock: N half-received
//! messages can fill the budget with none able to finish. Refusing one frees it at once.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection with less than this pending is never refused (its bytes still count).
pub const EXEMPT_BYTES: usize = 64 << 10;

/// Bytes of client messages being received, across all sessions.
#[derive(Debug)]
pub struct FrameBudget {
    limit: usize,
    used: AtomicUsize,
}

impl FrameBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<FrameBudget> {
        Arc::new(FrameBudget { limit, used: AtomicUsize::new(0) })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One connection's share of the budget.
#[derive(Debug)]
pub struct Meter {
    budget: Arc<FrameBudget>,
    pending: AtomicUsize,
    refused: AtomicBool,
}

impl Meter {
    /// A meter charging `budget`.
    pub fn new(budget: Arc<FrameBudget>) -> Arc<Meter> {
        Arc::new(Meter { budget, pending: AtomicUsize::new(0), refused: AtomicBool::new(false) })
    }

    /// Charges `n` bytes read; false when that refuses this connection.
    fn charge(&self, n: usize) -> bool {
        let pending = self.pending.fetch_add(n, Ordering::Relaxed) + n;
        let used = self.budget.used.fetch_add(n, Ordering::Relaxed) + n;
        if used > self.budget.limit && pending > EXEMPT_BYTES {
            self.refused.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The message read so far has been handled: gives its bytes back.
    pub fn release(&self) {
        let n = self.pending.swap(0, Ordering::Relaxed);
        self.budget.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes charged to this connection now.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Did a read fail because of the budget?
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.release();
    }
}

/// A stream whose reads are charged to a [`Meter`]. The inner stream can be taken out
/// ([`Metered::take`]) so a refused connection can be drained after its WebSocket state (and the
/// half-received message in it) is dropped.
#[derive(Debug)]
pub struct Metered<S> {
    inner: Option<S>,
    meter: Arc<Meter>,
}

impl<S> Metered<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, meter: Arc<Meter>) -> Metered<S> {
        Metered { inner: Some(inner), meter }
    }

    /// Takes the inner stream out; later reads and writes fail.
    pub fn take(&mut self) -> Option<S> {
        self.inner.take()
    }

    fn gone() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "stream taken")
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Err(Self::gone())) };
        let before = buf.filled().len();
        ready!(Pin::new(inner).poll_read(cx, buf))?;
        let n = buf.filled().len() - before;
        if n > 0 && !this.meter.charge(n) {
            return Poll::Ready(Err(io::Error::other("the frame memory budget is exhausted")));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(Self::gone())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Err(Self::gone())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Err(Self::gone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_is_refused_only_over_the_budget_and_beyond_the_exempt_size() {
        let budget = FrameBudget::new(100 << 10);
        let (a, b) = (Meter::new(budget.clone()), Meter::new(budget.clone()));
        assert!(a.charge(90 << 10));
        // b is over the budget in total but still small: let through.
        assert!(b.charge(20 << 10));
        assert!(!b.charge(50 << 10), "b is big and the total is over");
        assert!(b.refused() && !a.refused());
        b.release();
        assert_eq!(budget.used(), 90 << 10);
        drop(a);
        assert_eq!(budget.used(), 0, "dropping a meter gives its bytes back");
    }
}
