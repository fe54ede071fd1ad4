//! Layer 5: what a connection's driver shares with its handles: whether and how the
//! connection ended, whether the driver outlived its transport, and the receiving end of its
//! events, and the cooperative budget its futures take part in. Imports only `error`.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};

use mqtt_streaming_session::CloseReason;

use crate::error::Error;

/// How a connection ended, as the handles learn it once the driver is done with it.
#[derive(Clone, Debug)]
pub(crate) struct CloseInfo {
    pub(crate) reason: CloseReason,
    /// The transport error that ended the connection, if one did.
    pub(crate) io: Option<(io::ErrorKind, String)>,
}

impl CloseInfo {
    pub(crate) fn new(reason: CloseReason, io: Option<&io::Error>) -> Self {
        Self {
            reason,
            io: io.map(|e| (e.kind(), e.to_string())),
        }
    }

    pub(crate) fn to_error(&self) -> Error {
        if let Some((kind, message)) = &self.io {
            return Error::Io(io::Error::new(*kind, message.clone()));
        }
        match &self.reason {
            CloseReason::ConnectRefused(code) => Error::ConnectionRefused(*code),
            reason @ (CloseReason::Malformed(_) | CloseReason::ProtocolViolation(_)) => {
                Error::ProtocolViolation(reason.clone())
            }
            reason => Error::Closed(Some(reason.clone())),
        }
    }
}

/// State shared between a driver and its handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// How the current (or last) connection ended; `None` while it is open.
    closed: Mutex<Option<CloseInfo>>,
    /// The driver outlived its transport and waits for a new one.
    detached: AtomicBool,
}

impl Shared {
    fn closed(&self) -> MutexGuard<'_, Option<CloseInfo>> {
        self.closed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The error for an operation that could not complete because the connection closed.
    pub(crate) fn closed_error(&self) -> Error {
        match &*self.closed() {
            Some(info) => info.to_error(),
            None => Error::Closed(None),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed().is_some()
    }

    pub(crate) fn close_reason(&self) -> Option<CloseReason> {
        self.closed().as_ref().map(|info| info.reason.clone())
    }

    /// Records how the connection ended.
    pub(crate) fn set_closed(&self, info: CloseInfo) {
        *self.closed() = Some(info);
    }

    /// A new connection is open (a resumed session's CONNACK).
    pub(crate) fn set_open(&self) {
        *self.closed() = None;
    }

    pub(crate) fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Acquire)
    }

    pub(crate) fn set_detached(&self, detached: bool) {
        self.detached.store(detached, Ordering::Release);
    }
}

/// A connection's event channel: bounded, one receiver ([`Events`]), the driver sending.
///
/// Its buffer is allocated while events wait and given back once they are all received, so
/// an idle connection holds none (a `tokio::sync::mpsc` channel allocates a block of 32
/// slots, several KiB for these events, for as long as it lives).
pub(crate) fn event_channel<E>(capacity: usize) -> (EventSender<E>, Events<E>) {
    let chan = Arc::new(Chan {
        state: Mutex::new(ChanState {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            senders: 1,
            receiver: true,
            rx_waker: None,
            tx_waker: None,
        }),
    });
    (EventSender { chan: chan.clone() }, Events { chan })
}

/// Capacity an emptied event buffer may keep: a steady trickle of events allocates nothing,
/// a burst's buffer is given back.
const KEEP_EVENTS: usize = 4;

#[derive(Debug)]
struct Chan<E> {
    state: Mutex<ChanState<E>>,
}

#[derive(Debug)]
struct ChanState<E> {
    queue: VecDeque<E>,
    capacity: usize,
    senders: usize,
    receiver: bool,
    rx_waker: Option<Waker>,
    /// A sender waiting for room.
    tx_waker: Option<Waker>,
}

impl<E> Chan<E> {
    fn lock(&self) -> MutexGuard<'_, ChanState<E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        slot => *slot = Some(cx.waker().clone()),
    }
}

/// Why [`EventSender::try_send`] gave the event back.
#[derive(Debug)]
pub(crate) enum TrySendError<E> {
    Full(E),
    Closed(E),
}

/// The driver's end of the event channel.
#[derive(Debug)]
pub(crate) struct EventSender<E> {
    chan: Arc<Chan<E>>,
}

impl<E> Clone for EventSender<E> {
    fn clone(&self) -> Self {
        self.chan.lock().senders += 1;
        Self {
            chan: self.chan.clone(),
        }
    }
}

impl<E> Drop for EventSender<E> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.chan.lock();
            state.senders -= 1;
            if state.senders > 0 {
                return;
            }
            state.rx_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<E> EventSender<E> {
    /// Queues `event` if there is room.
    pub(crate) fn try_send(&self, event: E) -> Result<(), TrySendError<E>> {
        let waker = {
            let mut state = self.chan.lock();
            if !state.receiver {
                return Err(TrySendError::Closed(event));
            }
            if state.queue.len() >= state.capacity {
                return Err(TrySendError::Full(event));
            }
            state.queue.push_back(event);
            state.rx_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Ready with `true` once there is room for an event, with `false` once the receiver is
    /// gone. Registers the context's waker while full (one waiting sender at a time).
    pub(crate) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = self.chan.lock();
        if !state.receiver {
            return Poll::Ready(false);
        }
        if state.queue.len() < state.capacity {
            return Poll::Ready(true);
        }
        register(&mut state.tx_waker, cx);
        Poll::Pending
    }

    /// Waits for room, then queues `event`; gives it back when the receiver is gone.
    pub(crate) async fn send(&self, event: E) -> Result<(), E> {
        let mut event = Some(event);
        poll_fn(|cx| {
            if !ready!(self.poll_room(cx)) {
                return Poll::Ready(Err(event.take().expect("polled once more")));
            }
            match self.try_send(event.take().expect("polled once more")) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TrySendError::Closed(e)) => Poll::Ready(Err(e)),
                Err(TrySendError::Full(e)) => {
                    // Only one sender waits at a time; room taken meanwhile: wait again.
                    event = Some(e);
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// The receiving end of a connection's events, for both roles (`ClientEvents`,
/// `ConnectionEvents`). Also a [`futures_core::Stream`].
///
/// Read it: while it is full, the driver stops reading from the transport.
pub struct Events<E> {
    chan: Arc<Chan<E>>,
}

impl<E> fmt::Debug for Events<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl<E> Drop for Events<E> {
    fn drop(&mut self) {
        let (queue, waker) = {
            let mut state = self.chan.lock();
            state.receiver = false;
            (std::mem::take(&mut state.queue), state.tx_waker.take())
        };
        // Dropped outside the lock (an event may hold a token whose drop wakes a task).
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<E> Events<E> {
    /// The next event; `None` once the driver has ended and every event was received.
    ///
    /// Cancel safe: an event is never lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<E> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<E> {
        self.take(None).ok().flatten()
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<E>> {
        // Takes part in tokio's cooperative budget, as tokio's channel did (outside a tokio
        // runtime it always proceeds).
        let coop = ready!(coop::poll_proceed(cx));
        match self.take(Some(cx)) {
            Ok(event) => {
                coop.made_progress();
                Poll::Ready(event)
            }
            Err(()) => Poll::Pending,
        }
    }

    /// The next event (`Ok(None)`: the channel is closed and empty; `Err`: nothing yet, and
    /// the waker is registered when a context is given).
    fn take(&mut self, cx: Option<&Context<'_>>) -> Result<Option<E>, ()> {
        let (event, waker) = {
            let mut state = self.chan.lock();
            let was_full = state.queue.len() >= state.capacity;
            match state.queue.pop_front() {
                Some(event) => {
                    if state.queue.is_empty() && state.queue.capacity() > KEEP_EVENTS {
                        state.queue = VecDeque::new();
                    }
                    let waker = if was_full {
                        state.tx_waker.take()
                    } else {
                        None
                    };
                    (event, waker)
                }
                None if state.senders == 0 => return Ok(None),
                None => {
                    if let Some(cx) = cx {
                        register(&mut state.rx_waker, cx);
                    }
                    return Err(());
                }
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(Some(event))
    }
}

impl<E> futures_core::Stream for Events<E> {
    type Item = E;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.poll_recv(cx)
    }
}

/// tokio's cooperative scheduling budget for the handles' futures (the event channel, the
/// publish receipt), as tokio's own channels take part in it: a task awaiting them in a loop
/// yields to the scheduler now and then. Without the `tokio-runtime` feature (the engine under
/// smol or async-std) there is no budget and every poll proceeds.
pub(crate) mod coop {
    #[cfg(feature = "tokio-runtime")]
    pub(crate) use tokio::task::coop::poll_proceed;

    #[cfg(not(feature = "tokio-runtime"))]
    pub(crate) use no_budget::poll_proceed;

    #[cfg(not(feature = "tokio-runtime"))]
    mod no_budget {
        use std::task::{Context, Poll};

        /// The budget's unit when tokio is not compiled in: progress changes nothing.
        pub(crate) struct Proceed;

        impl Proceed {
            /// Nothing to restore.
            pub(crate) fn made_progress(&self) {}
        }

        /// Always proceeds: no tokio runtime, no budget.
        pub(crate) fn poll_proceed(_cx: &mut Context<'_>) -> Poll<Proceed> {
            Poll::Ready(Proceed)
        }
    }
}
