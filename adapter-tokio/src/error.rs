//! Layer 1, the bottom: [`Error`], why an operation of a client or server connection did not
//! succeed. Imports nothing from the crate.

use std::fmt;
use std::io;

use mqtt_streaming_proto::ReasonCode;
use mqtt_streaming_session::{AbandonCause, CloseReason, CommandError, Message};

/// Why an operation did not succeed.
///
/// Split by who must act, like the sessions' errors: the transport ([`Io`](Self::Io)), the peer
/// ([`ConnectionRefused`](Self::ConnectionRefused), [`ProtocolViolation`](Self::ProtocolViolation),
/// [`Closed`](Self::Closed)), or the caller ([`Rejected`](Self::Rejected)).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (connecting, reading or writing).
    Io(io::Error),
    /// The server refused the connection: its CONNACK carried this error code.
    ConnectionRefused(ReasonCode),
    /// The peer broke the protocol (a malformed packet or a packet not allowed at that point);
    /// the connection was closed, with an MQTT 5 DISCONNECT saying why where possible.
    ProtocolViolation(CloseReason),
    /// The connection is closed, or closed before the operation completed. The reason is the
    /// session's (`None` only if the driver task itself went away, for example in a panic).
    Closed(Option<CloseReason>),
    /// The session refused the command (invalid for the connection's limits or state); nothing
    /// was sent.
    Rejected(CommandError),
    /// The operation ended without an answer from the peer: the peer had no session for us, or
    /// a queued operation turned out to be impossible. A publish hands its message back.
    Abandoned {
        /// Why.
        cause: AbandonCause,
        /// The message of an abandoned publish, to retry it.
        message: Option<Box<Message>>,
    },
}

impl Error {
    /// Whether the connection is gone (as opposed to this one operation failing).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Self::Io(_) | Self::ConnectionRefused(_) | Self::ProtocolViolation(_) | Self::Closed(_)
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "transport error: {e}"),
            Self::ConnectionRefused(code) => write!(f, "connection refused: {code}"),
            Self::ProtocolViolation(reason) => write!(f, "the peer broke the protocol: {reason}"),
            Self::Closed(Some(reason)) => write!(f, "connection closed ({reason})"),
            Self::Closed(None) => f.write_str("connection closed"),
            Self::Rejected(e) => write!(f, "command rejected: {e}"),
            Self::Abandoned { cause, .. } => write!(f, "operation abandoned: {cause:?}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// A `try_publish` that did not hand the message over: the message comes back.
#[derive(Debug)]
pub struct TryPublishError {
    /// Why: [`Error::Rejected`] with [`CommandError::QueueFull`] when the command queue is
    /// full (retry later, or use `publish` to wait), [`Error::Closed`] when the connection is gone.
    pub error: Error,
    /// The message, unchanged.
    pub message: Message,
}

impl fmt::Display for TryPublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for TryPublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
