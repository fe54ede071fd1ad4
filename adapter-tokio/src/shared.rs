//! Layer 4: the state a connection's driver shares with its handles: whether and how the
//! connection ended, and whether the driver outlived its transport. Imports only `error`.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use mqtt_session::CloseReason;

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
