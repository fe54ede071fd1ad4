//! [`Pair`]: a client session and its server, joined by the simulated network.

use alloc::vec::Vec;
use core::time::Duration;

use bytes::BytesMut;
use mqtt_streaming_proto::{AckProperties, ConnAckProperties, Connect, QoS, ReasonCode};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::network::{Duplex, NetworkConfig};
use crate::client::{ClientConfig, ClientEvent, ClientSession};
use crate::error::CommandError;
use crate::message::Message;
use crate::server::{ServerConfig, ServerEvent, ServerSession, SessionExpiry, SessionState};
use crate::time::Instant;

/// Everything observable that happened in a [`Pair`], in order.
#[derive(Debug)]
pub enum PairEvent {
    /// An event of the client session.
    Client(ClientEvent<u64>),
    /// An event of a server session.
    Server(ServerEvent<u64>),
    /// A server-side session ended while detached (it expired at close): each message it held
    /// comes back with its token.
    ServerSessionEnded {
        /// The token given to `ServerSession::publish`.
        token: u64,
        /// The message.
        message: Message,
    },
}

/// A client session and a succession of server sessions (one per connection) over a seeded
/// simulated network with a manual clock.
///
/// The server side follows a minimal policy: it accepts every CONNECT, resuming the session
/// stored from the previous connection when the client asks for it; grants every subscription
/// at `min(requested, grant)`; acknowledges every unsubscription; and keeps the detached
/// session between connections unless its expiry is "at close".
///
/// ```
/// use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicName};
/// use mqtt_streaming_session::sim::{NetworkConfig, Pair, PairEvent};
/// use mqtt_streaming_session::{ClientConfig, ClientEvent, Message, ServerConfig, ServerEvent};
///
/// let mut pair = Pair::new(7, NetworkConfig::default(), ClientConfig::default(), ServerConfig::default());
/// pair.connect(Connect::new(ProtocolVersion::V5, MqttString::new("sim").unwrap())).unwrap();
/// pair.run_for(100);
/// let message = Message::new(TopicName::new("t").unwrap(), QoS::ExactlyOnce, "x");
/// pair.client.publish(pair.now, message, 1).unwrap();
/// pair.run_for(200);
/// assert!(pair.events.iter().any(|e| matches!(e, PairEvent::Server(ServerEvent::Message { .. }))));
/// assert!(pair.events.iter().any(|e| matches!(e, PairEvent::Client(ClientEvent::Published { token: 1, .. }))));
/// ```
#[derive(Debug)]
pub struct Pair {
    /// The simulated clock.
    pub now: Instant,
    /// The client session.
    pub client: ClientSession<u64>,
    /// The server session of the current (or last) connection.
    pub server: Option<ServerSession<u64>>,
    /// Configuration for each new server session.
    pub server_config: ServerConfig,
    /// The server's stored session between connections.
    pub stored_session: Option<SessionState<u64>>,
    /// The network's behaviour.
    pub net: NetworkConfig,
    /// The current connection, if any.
    pub link: Option<Duplex>,
    /// Highest QoS the server grants to subscriptions.
    pub grant: QoS,
    /// Everything that happened.
    pub events: Vec<PairEvent>,
    rng: SmallRng,
    /// Set when either side closed: the link goes once its bytes are delivered.
    closing: bool,
}

impl Pair {
    /// A pair with no connection yet; `seed` fixes every random choice of the network.
    pub fn new(seed: u64, net: NetworkConfig, client: ClientConfig, server: ServerConfig) -> Self {
        Self {
            now: Instant::from_millis(1),
            client: ClientSession::new(client),
            server: None,
            server_config: server,
            stored_session: None,
            net,
            link: None,
            grant: QoS::ExactlyOnce,
            events: Vec::new(),
            rng: SmallRng::seed_from_u64(seed),
            closing: false,
        }
    }

    /// The network's random source, for tests that draw their own choices from the seed.
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// Opens a new connection (dropping any old one first) and sends `connect` on it.
    pub fn connect(&mut self, connect: Connect) -> Result<(), CommandError> {
        if self.link.is_some() {
            self.cut();
        }
        self.link = Some(Duplex::default());
        self.closing = false;
        self.server = Some(ServerSession::new(self.server_config.clone(), self.now));
        self.client.connect(self.now, connect)?;
        self.pump();
        Ok(())
    }

    /// The transport dies: bytes in flight are lost, both sides see the loss.
    pub fn cut(&mut self) {
        self.link = None;
        self.closing = false;
        self.client.handle_closed(self.now);
        if let Some(server) = &mut self.server {
            server.handle_closed(self.now);
        }
        self.pump();
    }

    /// Whether a connection exists.
    pub fn is_linked(&self) -> bool {
        self.link.is_some()
    }

    /// Runs the simulation for `ms` milliseconds of simulated time, handling every delivery and
    /// timer in order.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        loop {
            self.pump();
            let next = [
                self.link.as_ref().and_then(Duplex::next_delivery),
                self.client.poll_timeout(),
                self.server.as_ref().and_then(ServerSession::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.tick();
                }
                _ => {
                    self.now = end;
                    self.tick();
                    return;
                }
            }
        }
    }

    /// Delivers what is due and fires due timers, at the current time.
    fn tick(&mut self) {
        let now = self.now;
        if let Some(link) = &mut self.link {
            if link.to_client.deliver(now, &mut link.client_rx) {
                self.client.handle_read(now, &mut link.client_rx);
            }
            if link.to_server.deliver(now, &mut link.server_rx) {
                if let Some(server) = &mut self.server {
                    server.handle_read(now, &mut link.server_rx);
                }
            }
        }
        self.client.handle_timeout(now);
        if let Some(server) = &mut self.server {
            server.handle_timeout(now);
        }
        self.pump();
        if self.closing && self.link.as_ref().is_some_and(Duplex::is_idle) {
            self.cut();
        }
    }

    /// Drains both sessions (transmit, then events) until neither has anything left.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            let now = self.now;
            let mut out = BytesMut::new();
            if self.client.poll_transmit(now, &mut out) > 0 {
                progressed = true;
                if let Some(link) = &mut self.link {
                    link.to_server
                        .send(now, out.split().freeze(), &self.net, &mut self.rng);
                }
            }
            if let Some(server) = &mut self.server {
                if server.poll_transmit(now, &mut out) > 0 {
                    progressed = true;
                    if let Some(link) = &mut self.link {
                        link.to_client
                            .send(now, out.split().freeze(), &self.net, &mut self.rng);
                    }
                }
            }
            while let Some(event) = self.client.poll_event() {
                progressed = true;
                if matches!(event, ClientEvent::Closed { .. }) {
                    self.closing = true;
                }
                self.events.push(PairEvent::Client(event));
            }
            while let Some(event) = self.server.as_mut().and_then(ServerSession::poll_event) {
                progressed = true;
                self.server_policy(&event);
                self.events.push(PairEvent::Server(event));
            }
            // The server may have stopped reading while requests waited for answers.
            if let (Some(link), Some(server)) = (&mut self.link, &mut self.server) {
                if !link.server_rx.is_empty() {
                    let before = link.server_rx.len();
                    server.handle_read(now, &mut link.server_rx);
                    progressed |= link.server_rx.len() != before;
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// The minimal server behaviour described on [`Pair`].
    fn server_policy(&mut self, event: &ServerEvent<u64>) {
        let now = self.now;
        let Some(server) = &mut self.server else {
            return;
        };
        match event {
            ServerEvent::Connect(_) => {
                let stored = self.stored_session.take();
                let result = server.accept(now, ConnAckProperties::default(), stored);
                debug_assert!(result.is_ok(), "{result:?}");
            }
            ServerEvent::Subscribe(s) => {
                let codes = s
                    .subscriptions
                    .iter()
                    .map(|sub| ReasonCode::granted(sub.options.qos.min(self.grant)))
                    .collect();
                let result = server.suback(now, s.packet_id, codes, AckProperties::default());
                debug_assert!(result.is_ok(), "{result:?}");
            }
            ServerEvent::Unsubscribe(u) => {
                let codes = u.filters.iter().map(|_| ReasonCode::Success).collect();
                let result = server.unsuback(now, u.packet_id, codes, AckProperties::default());
                debug_assert!(result.is_ok(), "{result:?}");
            }
            ServerEvent::Closed { .. } => {
                self.closing = true;
                let expiry = server.session_expiry();
                if let Some(state) = server.detach() {
                    if expiry == SessionExpiry::AtClose {
                        for (token, message) in state.into_abandoned() {
                            self.events
                                .push(PairEvent::ServerSessionEnded { token, message });
                        }
                    } else {
                        self.stored_session = Some(state);
                    }
                }
            }
            _ => {}
        }
    }
}
