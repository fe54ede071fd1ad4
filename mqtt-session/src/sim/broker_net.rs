//! [`BrokerNet`]: many client sessions and one broker core over the simulated network.

use alloc::vec::Vec;
use core::time::Duration;

use bytes::BytesMut;
use mqtt_streaming_proto::{Connect, Publish};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::network::{Duplex, NetworkConfig};
use crate::broker::{Broker, BrokerConfig, BrokerEvent, BrokerHooks, ConnectionId};
use crate::client::{ClientConfig, ClientEvent, ClientSession};
use crate::error::CommandError;
use crate::time::Instant;

/// One simulated client of a [`BrokerNet`].
#[derive(Debug)]
pub struct SimClient {
    /// Its session.
    pub session: ClientSession<u64>,
    /// Its connection to the broker, if any.
    pub link: Option<(Duplex, ConnectionId)>,
    /// Every event its session reported.
    pub events: Vec<ClientEvent<u64>>,
    closing: bool,
}

impl SimClient {
    /// The application messages it received, in order.
    pub fn messages(&self) -> Vec<&Publish> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message { publish, .. } => Some(publish),
                _ => None,
            })
            .collect()
    }
}

/// A broker core and many client sessions joined by the seeded simulated network.
///
/// ```
/// use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
/// use mqtt_streaming_session::broker::BrokerConfig;
/// use mqtt_streaming_session::sim::{BrokerNet, NetworkConfig};
/// use mqtt_streaming_session::{ClientConfig, Message, SubscribeRequest};
///
/// let mut net = BrokerNet::new(1, NetworkConfig::default(), BrokerConfig::default());
/// let (a, b) = (net.add_client(ClientConfig::default()), net.add_client(ClientConfig::default()));
/// net.connect(a, Connect::new(ProtocolVersion::V5, MqttString::new("a").unwrap())).unwrap();
/// net.connect(b, Connect::new(ProtocolVersion::V3_1_1, MqttString::new("b").unwrap())).unwrap();
/// net.run_for(100);
/// let now = net.now;
/// net.clients[b].session.subscribe(now, SubscribeRequest::new(TopicFilter::new("x/+").unwrap(), QoS::AtLeastOnce), 1).unwrap();
/// net.run_for(100);
/// let now = net.now;
/// net.clients[a].session.publish(now, Message::new(TopicName::new("x/1").unwrap(), QoS::AtLeastOnce, "hi"), 2).unwrap();
/// net.run_for(100);
/// assert_eq!(&net.clients[b].messages()[0].payload[..], b"hi");
/// ```
#[derive(Debug)]
pub struct BrokerNet<H: BrokerHooks = crate::broker::AllowAll> {
    /// The simulated clock.
    pub now: Instant,
    /// The broker core.
    pub broker: Broker<H>,
    /// The clients, by the index `add_client` returned.
    pub clients: Vec<SimClient>,
    /// Every broker event.
    pub broker_events: Vec<BrokerEvent>,
    net: NetworkConfig,
    rng: SmallRng,
}

impl BrokerNet<crate::broker::AllowAll> {
    /// A broker that lets everyone in, on a network seeded with `seed`.
    pub fn new(seed: u64, net: NetworkConfig, config: BrokerConfig) -> Self {
        Self::with_broker(seed, net, Broker::new(config))
    }
}

impl<H: BrokerHooks> BrokerNet<H> {
    /// Around a broker built by the caller (with its own hooks).
    pub fn with_broker(seed: u64, net: NetworkConfig, broker: Broker<H>) -> Self {
        Self {
            now: Instant::from_millis(1),
            broker,
            clients: Vec::new(),
            broker_events: Vec::new(),
            net,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Adds a client with no connection; returns its index.
    pub fn add_client(&mut self, config: ClientConfig) -> usize {
        self.clients.push(SimClient {
            session: ClientSession::new(config),
            link: None,
            events: Vec::new(),
            closing: false,
        });
        self.clients.len() - 1
    }

    /// Opens a connection for client `i` and sends `connect` on it.
    pub fn connect(&mut self, i: usize, connect: Connect) -> Result<(), CommandError> {
        if self.clients[i].link.is_some() {
            self.cut(i);
        }
        let now = self.now;
        let conn = self
            .broker
            .open(now)
            // The broker takes no more connections: to the client, as if there were no
            // transport to connect on.
            .map_err(|_| CommandError::NotConnected)?;
        let client = &mut self.clients[i];
        client.link = Some((Duplex::default(), conn));
        client.closing = false;
        client.session.connect(now, connect)?;
        self.pump();
        Ok(())
    }

    /// Client `i`'s transport dies: bytes in flight are lost, both ends see it.
    pub fn cut(&mut self, i: usize) {
        let now = self.now;
        let client = &mut self.clients[i];
        client.closing = false;
        if let Some((_, conn)) = client.link.take() {
            self.broker.handle_closed(now, conn);
        }
        client.session.handle_closed(now);
        self.pump();
    }

    /// Runs for `ms` milliseconds of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        loop {
            self.pump();
            let mut next = self.broker.poll_timeout();
            for c in &self.clients {
                for t in [
                    c.session.poll_timeout(),
                    c.link.as_ref().and_then(|(d, _)| d.next_delivery()),
                ] {
                    next = match (next, t) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
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

    fn tick(&mut self) {
        let now = self.now;
        for i in 0..self.clients.len() {
            let client = &mut self.clients[i];
            if let Some((link, conn)) = &mut client.link {
                if link.to_client.deliver(now, &mut link.client_rx) {
                    client.session.handle_read(now, &mut link.client_rx);
                }
                if link.to_server.deliver(now, &mut link.server_rx) {
                    self.broker.handle_read(now, *conn, &mut link.server_rx);
                }
            }
            client.session.handle_timeout(now);
        }
        self.broker.handle_timeout(now);
        self.pump();
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            if c.closing && c.link.as_ref().is_none_or(|(d, _)| d.is_idle()) {
                self.cut(i);
            }
        }
    }

    fn pump(&mut self) {
        let now = self.now;
        loop {
            let mut progressed = false;
            let mut out = BytesMut::new();
            for client in &mut self.clients {
                if client.session.poll_transmit(now, &mut out) > 0 {
                    progressed = true;
                    if let Some((link, _)) = &mut client.link {
                        link.to_server
                            .send(now, out.split().freeze(), &self.net, &mut self.rng);
                    }
                    out.clear();
                }
                while let Some(event) = client.session.poll_event() {
                    progressed = true;
                    if matches!(event, ClientEvent::Closed { .. }) {
                        client.closing = true;
                    }
                    client.events.push(event);
                }
            }
            while let Some(conn) = self.broker.poll_transmit(now, &mut out) {
                progressed = true;
                let bytes = out.split().freeze();
                if let Some(client) = self
                    .clients
                    .iter_mut()
                    .find(|c| c.link.as_ref().is_some_and(|(_, id)| *id == conn))
                {
                    if let Some((link, _)) = &mut client.link {
                        link.to_client.send(now, bytes, &self.net, &mut self.rng);
                    }
                }
            }
            while let Some(event) = self.broker.poll_event() {
                progressed = true;
                if let BrokerEvent::Close { connection, .. } = &event {
                    if let Some(client) = self
                        .clients
                        .iter_mut()
                        .find(|c| c.link.as_ref().is_some_and(|(_, id)| id == connection))
                    {
                        client.closing = true;
                    }
                }
                self.broker_events.push(event);
            }
            // The broker may have stopped reading a connection while it waited.
            for client in &mut self.clients {
                if let Some((link, conn)) = &mut client.link {
                    if !link.server_rx.is_empty() {
                        let before = link.server_rx.len();
                        self.broker.handle_read(now, *conn, &mut link.server_rx);
                        progressed |= link.server_rx.len() != before;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }
}
