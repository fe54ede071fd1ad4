//! Helpers shared by the `broker_*` simulation tests: a [`BrokerNet`] with short commands to
//! connect, subscribe, publish, and read what each client saw.
#![allow(dead_code, unreachable_pub)]

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    ConnAck, Connect, Disconnect, MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
    SubscriptionOptions, TopicFilter, TopicName,
};
use mqtt_streaming_session::broker::{BrokerConfig, BrokerHooks, ConnectionId};
use mqtt_streaming_session::sim::{BrokerNet, NetworkConfig};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, CloseReason, Message, SubscribeRequest, UnsubscribeRequest,
};

pub const V5: ProtocolVersion = ProtocolVersion::V5;
pub const V3: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const Q0: QoS = QoS::AtMostOnce;
pub const Q1: QoS = QoS::AtLeastOnce;
pub const Q2: QoS = QoS::ExactlyOnce;

/// Long enough for any exchange over the default simulated network (1..20 ms a hop).
pub const SETTLE_MS: u64 = 300;

pub fn net() -> BrokerNet {
    net_with(BrokerConfig::default())
}

pub fn net_with(config: BrokerConfig) -> BrokerNet {
    BrokerNet::new(7, NetworkConfig::default(), config)
}

pub fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

pub fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

pub fn string(s: &str) -> MqttString {
    MqttString::new(s).unwrap()
}

/// A CONNECT; `expiry` is the MQTT 5 Session Expiry Interval (ignored for 3.1.1).
pub fn connect_packet(version: ProtocolVersion, id: &str, clean: bool, expiry: u32) -> Connect {
    let mut c = Connect::new(version, string(id));
    c.clean_start = clean;
    c.keep_alive = 0;
    if version.is_v5() && expiry > 0 {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// Adds a client and connects it; returns its index.
pub fn client<H: BrokerHooks>(
    net: &mut BrokerNet<H>,
    version: ProtocolVersion,
    id: &str,
    clean: bool,
    expiry: u32,
) -> usize {
    let i = net.add_client(ClientConfig::default());
    connect(net, i, connect_packet(version, id, clean, expiry));
    i
}

/// (Re)connects client `i` and lets the exchange finish.
pub fn connect<H: BrokerHooks>(net: &mut BrokerNet<H>, i: usize, connect: Connect) {
    net.connect(i, connect).unwrap();
    net.run_for(SETTLE_MS);
}

/// The last CONNACK client `i` received.
pub fn connack<H: BrokerHooks>(net: &BrokerNet<H>, i: usize) -> ConnAck {
    net.clients[i]
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            ClientEvent::Connected(ack) => Some((**ack).clone()),
            _ => None,
        })
        .expect("no CONNACK")
}

/// The reason of the last close client `i` saw.
pub fn close_reason<H: BrokerHooks>(net: &BrokerNet<H>, i: usize) -> Option<CloseReason> {
    net.clients[i].events.iter().rev().find_map(|e| match e {
        ClientEvent::Closed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
}

pub fn subscribe<H: BrokerHooks>(net: &mut BrokerNet<H>, i: usize, f: &str, qos: QoS) {
    subscribe_req(net, i, SubscribeRequest::new(filter(f), qos));
}

pub fn subscribe_opts<H: BrokerHooks>(
    net: &mut BrokerNet<H>,
    i: usize,
    f: &str,
    options: SubscriptionOptions,
) {
    let mut req = SubscribeRequest::new(filter(f), options.qos);
    req.subscriptions[0].options = options;
    subscribe_req(net, i, req);
}

pub fn subscribe_req<H: BrokerHooks>(net: &mut BrokerNet<H>, i: usize, req: SubscribeRequest) {
    let now = net.now;
    net.clients[i].session.subscribe(now, req, 0).unwrap();
    net.run_for(SETTLE_MS);
}

pub fn unsubscribe<H: BrokerHooks>(net: &mut BrokerNet<H>, i: usize, f: &str) {
    let now = net.now;
    net.clients[i]
        .session
        .unsubscribe(now, UnsubscribeRequest::new(filter(f)), 0)
        .unwrap();
    net.run_for(SETTLE_MS);
}

/// The reason codes of the last SUBACK client `i` received.
pub fn suback_codes<H: BrokerHooks>(net: &BrokerNet<H>, i: usize) -> Vec<ReasonCode> {
    net.clients[i]
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            ClientEvent::Subscribed { suback, .. } => Some(suback.reason_codes.clone()),
            _ => None,
        })
        .expect("no SUBACK")
}

/// Queues a publish on client `i` (sent when it can be); does not run the network.
pub fn send<H: BrokerHooks>(net: &mut BrokerNet<H>, i: usize, message: Message) {
    let now = net.now;
    net.clients[i].session.publish(now, message, 0).unwrap();
}

/// Publishes and lets it be routed and delivered.
pub fn publish<H: BrokerHooks>(net: &mut BrokerNet<H>, i: usize, t: &str, qos: QoS, p: &str) {
    send(
        net,
        i,
        Message::new(topic(t), qos, Bytes::copy_from_slice(p.as_bytes())),
    );
    net.run_for(SETTLE_MS);
}

/// The reason codes of every publish acknowledgement client `i` received, in order.
pub fn publish_acks<H: BrokerHooks>(net: &BrokerNet<H>, i: usize) -> Vec<ReasonCode> {
    net.clients[i]
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Published { reason_code, .. } => Some(*reason_code),
            _ => None,
        })
        .collect()
}

/// Every PUBLISH client `i` received, in order.
pub fn received<H: BrokerHooks>(net: &BrokerNet<H>, i: usize) -> Vec<Publish> {
    net.clients[i].messages().into_iter().cloned().collect()
}

/// The payloads client `i` received, in order, as text.
pub fn payloads<H: BrokerHooks>(net: &BrokerNet<H>, i: usize) -> Vec<String> {
    received(net, i)
        .iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        .collect()
}

/// Client `i` leaves with DISCONNECT `code` (and an MQTT 5 Session Expiry Interval).
pub fn disconnect<H: BrokerHooks>(
    net: &mut BrokerNet<H>,
    i: usize,
    code: ReasonCode,
    expiry: Option<u32>,
) {
    let now = net.now;
    let mut d = Disconnect::new(code);
    d.properties.session_expiry_interval = expiry;
    net.clients[i].session.disconnect(now, d).unwrap();
    net.run_for(SETTLE_MS);
}

/// Client `i`'s transport dies without a DISCONNECT.
pub fn cut<H: BrokerHooks>(net: &mut BrokerNet<H>, i: usize) {
    net.cut(i);
    net.run_for(SETTLE_MS);
}

/// A connection opened on the broker directly and fed `packets` (no client session: it
/// never answers, never pings). What the broker sends it is discarded by the harness.
pub fn raw_connection<H: BrokerHooks>(
    net: &mut BrokerNet<H>,
    version: ProtocolVersion,
    packets: Vec<Packet>,
) -> ConnectionId {
    let now = net.now;
    let conn = net.broker.open(now).unwrap();
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    net.broker.handle_read(now, conn, &mut buf);
    net.run_for(SETTLE_MS);
    conn
}
