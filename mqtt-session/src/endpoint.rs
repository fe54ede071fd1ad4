//! [`Endpoint`]: the inputs and outputs every session of this crate shares, so that a driver
//! can be written once for the client and the server side.

use bytes::BytesMut;

use crate::client::{ClientEvent, ClientSession};
use crate::server::{ServerEvent, ServerSession};
use crate::time::Instant;
use crate::transmit::TransmitBuf;

/// A sans-IO session as a driver sees it: bytes, time and transport loss in; bytes, events
/// and the next deadline out. [`ClientSession`] and [`ServerSession`] implement it with their
/// inherent methods of the same names (see them for the details and the drain rule); the
/// role-specific commands stay on each type.
///
/// The trait is sealed: only this crate's sessions implement it, so methods can be added
/// without breaking anyone.
///
/// ```
/// use bytes::BytesMut;
/// use mqtt_streaming_proto::{Connect, MqttString, Packet, ProtocolVersion};
/// use mqtt_streaming_session::{ClientConfig, ClientSession, Endpoint, Instant, ServerConfig, ServerSession};
///
/// /// One drain, written once for both roles.
/// fn drain<E: Endpoint>(session: &mut E, now: Instant, out: &mut BytesMut) -> Vec<E::Event> {
///     while session.poll_transmit(now, out) > 0 {}
///     std::iter::from_fn(|| session.poll_event()).collect()
/// }
///
/// let now = Instant::from_millis(0);
/// let mut client: ClientSession<()> = ClientSession::new(ClientConfig::default());
/// client.connect(now, Connect::new(ProtocolVersion::V3_1_1, MqttString::new("c").unwrap())).unwrap();
/// let mut wire = BytesMut::new();
/// assert!(drain(&mut client, now, &mut wire).is_empty());
///
/// let mut server: ServerSession<()> = ServerSession::new(ServerConfig::default(), now);
/// server.handle_read(now, &mut wire); // the client's CONNECT
/// let events = drain(&mut server, now, &mut BytesMut::new());
/// assert!(matches!(events[..], [mqtt_streaming_session::ServerEvent::Connect(_)]));
/// ```
pub trait Endpoint: sealed::Sealed {
    /// What [`poll_event`](Self::poll_event) yields.
    type Event;

    /// Bytes read from the transport; whole packets are consumed from the front of `buf`.
    fn handle_read(&mut self, now: Instant, buf: &mut BytesMut);
    /// Fires the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The transport is gone.
    fn handle_closed(&mut self, now: Instant);
    /// Appends bytes for the transport to `buf`; returns how many.
    #[must_use = "call poll_transmit until it returns 0"]
    fn poll_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> usize;
    /// [`poll_transmit`](Self::poll_transmit), exchanging buffers instead of copying when
    /// `buf` is empty, for a buffer that owns its allocation alone
    /// ([`ClientSession::poll_transmit_swap`]); sessions without it append as `poll_transmit`.
    #[must_use = "call poll_transmit_swap until it returns 0"]
    fn poll_transmit_swap(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
        self.poll_transmit(now, buf)
    }
    /// [`poll_transmit`](Self::poll_transmit) into a segment list
    /// ([`ClientSession::poll_transmit_buf`]: large payloads not copied); sessions without it
    /// encode into the list's copy buffer as [`poll_transmit_swap`](Self::poll_transmit_swap).
    #[must_use = "call poll_transmit_buf until it returns 0"]
    fn poll_transmit_buf(&mut self, now: Instant, buf: &mut TransmitBuf) -> usize {
        self.poll_transmit_swap(now, buf.tail_mut())
    }
    /// The next event, if any.
    #[must_use = "events carry tokens and messages that are lost if dropped unread"]
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// When [`handle_timeout`](Self::handle_timeout) has work next.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
    /// Whether [`handle_read`](Self::handle_read) would consume input now (a driver reads the
    /// transport only while it is `true`).
    fn wants_read(&self) -> bool;
}

mod sealed {
    /// Implemented by this crate's sessions only.
    #[allow(unreachable_pub)]
    pub trait Sealed {}
}

macro_rules! endpoint_by_inherent_methods {
    ($session:ident, $event:ident $(, $swap:ident, $segmented:ident)?) => {
        impl<T> sealed::Sealed for $session<T> {}

        impl<T> Endpoint for $session<T> {
            type Event = $event<T>;

            fn handle_read(&mut self, now: Instant, buf: &mut BytesMut) {
                $session::handle_read(self, now, buf)
            }
            fn handle_timeout(&mut self, now: Instant) {
                $session::handle_timeout(self, now)
            }
            fn handle_closed(&mut self, now: Instant) {
                $session::handle_closed(self, now)
            }
            fn poll_transmit(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
                $session::poll_transmit(self, now, buf)
            }
            $(
                fn $swap(&mut self, now: Instant, buf: &mut BytesMut) -> usize {
                    $session::$swap(self, now, buf)
                }
                fn $segmented(&mut self, now: Instant, buf: &mut TransmitBuf) -> usize {
                    $session::$segmented(self, now, buf)
                }
            )?
            fn poll_event(&mut self) -> Option<Self::Event> {
                $session::poll_event(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                $session::poll_timeout(self)
            }
            fn wants_read(&self) -> bool {
                $session::wants_read(self)
            }
        }
    };
}

endpoint_by_inherent_methods!(
    ClientSession,
    ClientEvent,
    poll_transmit_swap,
    poll_transmit_buf
);
endpoint_by_inherent_methods!(ServerSession, ServerEvent);
