//! Layer 6: operation completion, shared by both roles: the token a publish carries through
//! the session, the future that waits for it, and the wait for any other reply. Imports only
//! `error` and `shared`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};

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
    AfterWrite(PublishToken),
}

/// One publish as the handle and the driver share it: the message on its way to the driver,
/// then the outcome on its way back. One allocation per publish carries both (where a
/// channel element holding the message and a oneshot channel for the outcome cost a copy of
/// the message into and out of the channel, and an allocation); the command channels carry
/// only the pointer.
#[derive(Debug, Default)]
struct Op {
    state: Mutex<OpState>,
}

#[derive(Debug, Default)]
struct OpState {
    /// The message, until the driver takes it.
    message: Option<Message>,
    outcome: Option<Result<PublishOutcome, Error>>,
    /// The token is gone without an outcome: the connection ended.
    abandoned: bool,
    waker: Option<Waker>,
}

impl Op {
    fn lock(&self) -> MutexGuard<'_, OpState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The token a publish carries through the session: where its outcome goes. Dropped
/// without an outcome (the session was dropped with the publish in it), its receipt fails
/// with the connection's close.
#[derive(Debug)]
pub(crate) struct PublishToken {
    op: Option<Arc<Op>>,
    at_most_once: bool,
}

impl PublishToken {
    /// A token whose outcome nobody waits for.
    pub(crate) fn unobserved(qos: QoS) -> Self {
        Self {
            op: None,
            at_most_once: qos == QoS::AtMostOnce,
        }
    }

    /// A token for a publish of `qos` and the receipt that waits for its outcome.
    pub(crate) fn pair(qos: QoS, shared: Arc<Shared>) -> (Self, PublishReceipt) {
        let op = Arc::new(Op::default());
        let token = Self {
            op: Some(op.clone()),
            at_most_once: qos == QoS::AtMostOnce,
        };
        (token, PublishReceipt { op, shared })
    }

    /// A token that also carries `message` to the driver ([`take_message`](Self::take_message)),
    /// and its receipt.
    pub(crate) fn carrying(message: Message, shared: Arc<Shared>) -> (Self, PublishReceipt) {
        let qos = message.qos;
        let op = Arc::new(Op {
            state: Mutex::new(OpState {
                message: Some(message),
                ..OpState::default()
            }),
        });
        let token = Self {
            op: Some(op.clone()),
            at_most_once: qos == QoS::AtMostOnce,
        };
        (token, PublishReceipt { op, shared })
    }

    /// The message the token carries (once).
    pub(crate) fn take_message(&self) -> Option<Message> {
        self.op.as_ref().and_then(|op| op.lock().message.take())
    }

    /// Gives the message back to the token (the session could not take it yet).
    pub(crate) fn put_message(&self, message: Message) {
        if let Some(op) = &self.op {
            op.lock().message = Some(message);
        }
    }

    /// The session reported `Published`. QoS 0 completes once its bytes are written.
    pub(crate) fn published(self, reason_code: ReasonCode, properties: AckProperties) -> Published {
        if self.at_most_once {
            return Published::AfterWrite(self);
        }
        self.finish(Ok(PublishOutcome {
            reason_code,
            properties,
        }));
        Published::Done
    }

    /// The bytes of a QoS 0 publish were written.
    pub(crate) fn written(self) {
        self.finish(Ok(PublishOutcome {
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }));
    }

    /// The session reported `Abandoned`.
    pub(crate) fn abandoned(self, cause: AbandonCause, message: Option<Message>) {
        self.fail(Error::Abandoned {
            cause,
            message: message.map(Box::new),
        });
    }

    pub(crate) fn fail(self, error: Error) {
        self.finish(Err(error));
    }

    fn finish(mut self, outcome: Result<PublishOutcome, Error>) {
        if let Some(op) = self.op.take() {
            // A receipt that is gone wants no outcome.
            if Arc::strong_count(&op) > 1 {
                let waker = {
                    let mut state = op.lock();
                    state.outcome = Some(outcome);
                    state.waker.take()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
    }
}

impl Drop for PublishToken {
    fn drop(&mut self) {
        // Nothing to tell when the receipt is gone.
        if let Some(op) = self.op.take().filter(|op| Arc::strong_count(op) > 1) {
            let waker = {
                let mut state = op.lock();
                state.abandoned = true;
                state.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
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
    op: Arc<Op>,
    shared: Arc<Shared>,
}

impl PublishReceipt {
    /// The message, when the driver never took it (the command was not handed over).
    pub(crate) fn into_message(self) -> Option<Message> {
        self.op.lock().message.take()
    }
}

impl Future for PublishReceipt {
    type Output = Result<PublishOutcome, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Takes part in tokio's cooperative budget, as the oneshot channel it replaces did: a
        // task awaiting receipts in a loop yields to the scheduler now and then (which lets
        // another worker take part). Outside a tokio runtime it always proceeds.
        let coop = ready!(crate::shared::coop::poll_proceed(cx));
        let mut state = self.op.lock();
        if let Some(outcome) = state.outcome.take() {
            coop.made_progress();
            return Poll::Ready(outcome);
        }
        if state.abandoned {
            drop(state);
            coop.made_progress();
            return Poll::Ready(Err(self.shared.closed_error()));
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
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
