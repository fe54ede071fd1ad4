//! [`ClientEvent`]: what the client session reports.

use alloc::boxed::Box;

use mqtt_streaming_proto::{AckProperties, Auth, ConnAck, Publish, ReasonCode, SubAck, UnsubAck};

use crate::error::{CloseReason, Initiator};
use crate::message::Message;
use crate::shared::flows::{AbandonCause, FlowEvent};
use crate::shared::inbound::InboundId;

/// Something the client session reports. Every token given with a command comes back in
/// exactly one of `Published`, `Subscribed`, `Unsubscribed` or `Abandoned`.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent<T> {
    /// The server accepted the connection. Re-sends (when the session was present) are already
    /// in the transmit buffer.
    Connected(Box<ConnAck>),
    /// An application message from the server. With `ack: Some`, the session is in manual-ack
    /// mode and waits for [`ClientSession::ack`](crate::ClientSession::ack) with that id.
    Message {
        /// The PUBLISH, with its topic resolved when it used a topic alias.
        publish: Publish,
        /// The id to acknowledge it with (manual mode, QoS 1 and 2).
        ack: Option<InboundId>,
    },
    /// A publish completed: QoS 0 handed to the transmit buffer, QoS 1 acknowledged by PUBACK,
    /// QoS 2 by PUBCOMP, or ended by a PUBREC with an error code. Check
    /// `reason_code.is_error()`.
    Published {
        /// The caller's token.
        token: T,
        /// The server's code (Success for QoS 0).
        reason_code: ReasonCode,
        /// The acknowledgement's properties.
        properties: AckProperties,
    },
    /// The server answered a SUBSCRIBE: one code per filter, in order.
    Subscribed {
        /// The caller's token.
        token: T,
        /// The SUBACK.
        suback: SubAck,
    },
    /// The server answered an UNSUBSCRIBE.
    Unsubscribed {
        /// The caller's token.
        token: T,
        /// The UNSUBACK (in MQTT 3.1.1 without codes).
        unsuback: UnsubAck,
    },
    /// An operation ended without an answer from the server.
    Abandoned {
        /// The caller's token.
        token: T,
        /// Why.
        cause: AbandonCause,
        /// The message, for an abandoned publish, so it can be retried.
        message: Option<Message>,
    },
    /// An AUTH packet from the server (MQTT 5 enhanced authentication): continue the exchange
    /// with [`ClientSession::auth`](crate::ClientSession::auth).
    Auth(Auth),
    /// The connection ended. Reported once per connection. The session keeps its state; call
    /// `connect` on a new transport to resume it.
    Closed {
        /// Who ended it.
        initiator: Initiator,
        /// Why.
        reason: CloseReason,
    },
}

impl<T> From<FlowEvent<T>> for ClientEvent<T> {
    fn from(event: FlowEvent<T>) -> Self {
        match event {
            FlowEvent::Message { publish, ack } => Self::Message { publish, ack },
            FlowEvent::Published {
                token,
                reason_code,
                properties,
            } => Self::Published {
                token,
                reason_code,
                properties,
            },
            FlowEvent::Abandoned {
                token,
                cause,
                message,
            } => Self::Abandoned {
                token,
                cause,
                message,
            },
        }
    }
}
