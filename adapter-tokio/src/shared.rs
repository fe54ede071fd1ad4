//! Layer 5: what a connection's driver shares with its handles: whether and how the
//! connection ended, whether the driver outlived its transport, and the receiving end of its
//! events. Imports only `error`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use mqtt_streaming_session::CloseReason;
use tokio::sync::mpsc;

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

/// The receiving end of a connection's events, for both roles (`ClientEvents`,
/// `ConnectionEvents`). Also a [`futures_core::Stream`].
///
/// Read it: while it is full, the driver stops reading from the transport.
#[derive(Debug)]
pub struct Events<E> {
    rx: mpsc::Receiver<E>,
}

impl<E> Events<E> {
    pub(crate) fn new(rx: mpsc::Receiver<E>) -> Self {
        Self { rx }
    }

    /// The next event; `None` once the driver has ended and every event was received.
    ///
    /// Cancel safe: an event is never lost when the future is dropped.
    pub async fn recv(&mut self) -> Option<E> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<E> {
        self.rx.try_recv().ok()
    }
}

impl<E> futures_core::Stream for Events<E> {
    type Item = E;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.rx.poll_recv(cx)
    }
}
