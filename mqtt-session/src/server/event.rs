//! [`ServerEvent`]: what the server session reports.

use alloc::boxed::Box;

use mqtt_streaming_proto::{
    AckProperties, Auth, Connect, Publish, ReasonCode, Subscribe, Unsubscribe, Will,
};

use crate::error::{CloseReason, Initiator};
use crate::message::Message;
use crate::shared::flows::{AbandonCause, FlowEvent};
use crate::shared::inbound::InboundId;

/// Something the server session reports. Every token given to
/// [`ServerSession::publish`](crate::ServerSession::publish) comes back in exactly one of
/// `Published` or `Abandoned` (except the tokens of QoS 0 messages sent with
/// [`ServerConfig::report_qos0_published`](crate::ServerConfig::report_qos0_published) off,
/// which are dropped once sent).
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerEvent<T> {
    /// The client asks to connect: answer with `accept` or `reject` (or, for MQTT 5 enhanced
    /// authentication, `auth` first).
    Connect(Box<Connect>),
    /// An AUTH packet from the client (continuing an exchange, or re-authenticating).
    Auth(Auth),
    /// An application message from the client, its topic resolved when it used an alias.
    Message {
        /// The PUBLISH.
        publish: Publish,
        /// The id to acknowledge it with (manual mode, QoS 1 and 2).
        ack: Option<InboundId>,
    },
    /// The client subscribes: answer with `suback`, one code per filter.
    Subscribe(Subscribe),
    /// The client unsubscribes: answer with `unsuback`.
    Unsubscribe(Unsubscribe),
    /// A publish to the client completed (see [`ClientEvent::Published`](crate::ClientEvent::Published)).
    Published {
        /// The caller's token.
        token: T,
        /// The client's code (Success for QoS 0).
        reason_code: ReasonCode,
        /// The acknowledgement's properties.
        properties: AckProperties,
    },
    /// A publish to the client ended without an answer.
    Abandoned {
        /// The caller's token.
        token: T,
        /// Why.
        cause: AbandonCause,
        /// The message, so it can be retried or routed elsewhere.
        message: Option<Message>,
    },
    /// The connection ended. Reported once. `will` is the client's will message when the
    /// connection ended without a normal DISCONNECT (or with 0x04, Disconnect with Will
    /// Message); publish it after its Will Delay Interval unless the session resumes first.
    Closed {
        /// Who ended it.
        initiator: Initiator,
        /// Why.
        reason: CloseReason,
        /// The will to publish, if any.
        will: Option<Will>,
    },
}

impl<T> From<FlowEvent<T>> for ServerEvent<T> {
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
