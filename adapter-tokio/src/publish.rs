//! Layer 6: operation completion, shared by both roles: the token a publish carries through
//! the session, the future that waits for it, and the wait for any other reply. Imports only
//! `error` and `shared`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mqtt_streaming_proto::{AckProperties, QoS, ReasonCode};
use mqtt_streaming_session::{AbandonCause, Message};
use tokio::sync::oneshot;

use crate::error::Error;
use crate::shared::Shared;

/// The peer's answer to a publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The code of the PUBACK (QoS 1) or PUBCOMP (QoS 2), or of a PUBREC that ended a QoS 2
    /// flow with an error; Success for QoS 0 (and always for MQTT 3.1.1 peers).
    pub reason_code: ReasonCode,
    /// The acknowledgement's MQTT 5 properties (reason string, user properties).
    pub properties: AckProperties,
}

impl PublishOutcome {
    /// Whether the peer accepted the message (a code below 0x80: Success, or for example
    /// 0x10 No matching subscribers).
    pub fn is_success(&self) -> bool {
        !self.reason_code.is_error()
    }
}

/// What is left to do once the session reported a publish done.
pub(crate) enum Published {
    /// Nothing: the outcome went to the waiting future.
    Done,
    /// A QoS 0 publish: complete it once the bytes encoded so far are written.
    AfterWrite(Option<PublishReply>),
}

pub(crate) type PublishReply = oneshot::Sender<Result<PublishOutcome, Error>>;

/// The token a publish carries through the session: where its outcome goes.
#[derive(Debug)]
pub(crate) struct PublishToken {
    reply: Option<PublishReply>,
    at_most_once: bool,
}

impl PublishToken {
    pub(crate) fn new(reply: Option<PublishReply>, qos: QoS) -> Self {
        Self {
            reply,
            at_most_once: qos == QoS::AtMostOnce,
        }
    }

    /// The session reported `Published`. QoS 0 completes once its bytes are written.
    pub(crate) fn published(self, reason_code: ReasonCode, properties: AckProperties) -> Published {
        if self.at_most_once {
            return Published::AfterWrite(self.reply);
        }
        if let Some(reply) = self.reply {
            let _ = reply.send(Ok(PublishOutcome {
                reason_code,
                properties,
            }));
        }
        Published::Done
    }

    /// The session reported `Abandoned`.
    pub(crate) fn abandoned(self, cause: AbandonCause, message: Option<Message>) {
        self.fail(Error::Abandoned {
            cause,
            message: message.map(Box::new),
        });
    }

    pub(crate) fn fail(self, error: Error) {
        if let Some(reply) = self.reply {
            let _ = reply.send(Err(error));
        }
    }
}

pub(crate) fn complete_success(reply: Option<PublishReply>) {
    if let Some(reply) = reply {
        let _ = reply.send(Ok(PublishOutcome {
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }));
    }
}

/// A publish handed to the driver; resolves when the peer acknowledged it (QoS 1: PUBACK,
/// QoS 2: PUBCOMP, or a PUBREC with an error code) or, for QoS 0, when its bytes were written
/// to the transport.
///
/// Cancel safety: dropping the receipt never affects the publish, which the driver carries on
/// with; only its outcome is discarded.
#[derive(Debug)]
#[must_use = "a receipt does nothing unless awaited; dropping it does not cancel the publish"]
pub struct PublishReceipt {
    rx: oneshot::Receiver<Result<PublishOutcome, Error>>,
    shared: Arc<Shared>,
}

impl PublishReceipt {
    pub(crate) fn new(
        rx: oneshot::Receiver<Result<PublishOutcome, Error>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self { rx, shared }
    }
}

impl Future for PublishReceipt {
    type Output = Result<PublishOutcome, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_)) => Poll::Ready(Err(self.shared.closed_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Waits for a reply from the driver; a dropped reply means the connection closed.
pub(crate) async fn reply<T>(
    rx: oneshot::Receiver<Result<T, Error>>,
    shared: &Shared,
) -> Result<T, Error> {
    match rx.await {
        Ok(result) => result,
        Err(_) => Err(shared.closed_error()),
    }
}
