//! Issue 10, item 2: what the broker keeps owns its bytes.
//!
//! A decoded PUBLISH is a set of slices of the read buffer. A small message that shared a read
//! with a 16 KiB one and is then kept (retained, queued for an offline session, in flight to a
//! subscriber that has not acknowledged it, a will, a CONNECT pending enhanced authentication,
//! the topic of an inbound topic alias)
//! must not keep the whole read alive. Each scenario feeds `N` read chunks that each hold a
//! 16 KiB packet (complete, or a partial tail the transport keeps) next to the small packet
//! that gets kept, drops every chunk, and counts with a global allocator (`stats_alloc`) what
//! the broker still holds: it must be about the small message's size, not the chunk's.
//!
//! The counters are global, so this binary holds one test that runs the scenarios in turn.

use std::alloc::System;

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Auth, AuthProperties, Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish, QoS,
    QosPid, Subscribe, SubscriptionOptions, TopicFilter, TopicName, Will, WillProperties,
};
use mqtt_streaming_session::broker::{
    AuthDecision, Broker, BrokerConfig, BrokerHooks, ConnectionId,
};
use mqtt_streaming_session::Instant;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const N: usize = 500;
const BIG: usize = 16 * 1024;
const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V3_1_1;

fn now() -> Instant {
    Instant::from_millis(1)
}

fn encode(version: ProtocolVersion, packets: Vec<Packet>) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    buf
}

fn big_publish() -> Packet {
    Packet::Publish(Publish::new(
        TopicName::new("big").unwrap(),
        QosPid::AtMostOnce,
        vec![0xAB; BIG],
    ))
}

fn small_publish(topic: &str, qos_pid: QosPid, retain: bool) -> Packet {
    let mut p = Publish::new(TopicName::new(topic).unwrap(), qos_pid, &b"0123456789"[..]);
    p.retain = retain;
    Packet::Publish(p)
}

/// The first `BIG` bytes of a larger PUBLISH: a partial packet left in the read buffer.
fn partial_big(version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    Packet::Publish(Publish::new(
        TopicName::new("big").unwrap(),
        QosPid::AtMostOnce,
        vec![0xAB; 2 * BIG],
    ))
    .encode(version, &mut buf)
    .unwrap();
    buf[..BIG].to_vec()
}

fn drain<H: BrokerHooks>(broker: &mut Broker<H>) {
    let mut out = BytesMut::new();
    while broker.poll_transmit(now(), &mut out).is_some() {
        out.clear();
    }
    while broker.poll_event().is_some() {}
}

fn feed<H: BrokerHooks>(broker: &mut Broker<H>, id: ConnectionId, mut chunk: BytesMut) {
    broker.handle_read(now(), id, &mut chunk);
    drain(broker);
    drop(chunk);
}

fn connected<H: BrokerHooks>(
    broker: &mut Broker<H>,
    version: ProtocolVersion,
    connect: Connect,
) -> ConnectionId {
    let id = broker.open(now()).unwrap();
    feed(broker, id, encode(version, vec![Packet::from(connect)]));
    id
}

fn client(version: ProtocolVersion, id: &str, clean: bool) -> Connect {
    let mut c = Connect::new(version, MqttString::new(id).unwrap());
    c.clean_start = clean;
    c
}

fn subscribe(filter: &str) -> Packet {
    Packet::Subscribe(Subscribe::new(
        PacketId::new(1).unwrap(),
        TopicFilter::new(filter).unwrap(),
        SubscriptionOptions::new(QoS::AtLeastOnce),
    ))
}

/// Bytes still allocated since `region` started, per item. (`stats_alloc` already counts a
/// reallocation's growth in `bytes_allocated` and its shrinking in `bytes_deallocated`.)
fn held_per(region: &Region<'_, System>, items: usize) -> f64 {
    let c = region.change();
    (c.bytes_allocated as f64 - c.bytes_deallocated as f64) / items as f64
}

fn qos1(i: usize) -> QosPid {
    QosPid::AtLeastOnce(PacketId::new((i % 60_000) as u16 + 1).unwrap())
}

/// Retained messages: each 10-byte retained PUBLISH arrives in one read after a 16 KiB one.
fn retained() -> f64 {
    let mut broker = Broker::new(BrokerConfig::default());
    let publisher = connected(&mut broker, V3, client(V3, "pub", true));
    // Each chunk is built inside the region: what the broker does not keep of it is freed
    // there too.
    let region = Region::new(GLOBAL);
    for i in 0..N {
        let chunk = {
            encode(
                V3,
                vec![
                    big_publish(),
                    small_publish(&format!("r/{i:04}"), QosPid::AtMostOnce, true),
                ],
            )
        };
        feed(&mut broker, publisher, chunk);
    }
    let per = held_per(&region, N);
    assert_eq!(broker.stats().retained, N);
    per
}

/// The offline queue of a persistent session: QoS 1 messages queued while it is away.
fn offline_queue() -> f64 {
    let mut broker = Broker::new(BrokerConfig::default());
    let sub = connected(&mut broker, V3, client(V3, "sub", false));
    feed(&mut broker, sub, encode(V3, vec![subscribe("q/#")]));
    broker.handle_closed(now(), sub);
    drain(&mut broker);
    let publisher = connected(&mut broker, V3, client(V3, "pub", true));
    // Each chunk is built inside the region: what the broker does not keep of it is freed
    // there too.
    let region = Region::new(GLOBAL);
    for i in 0..N {
        let chunk = encode(
            V3,
            vec![
                big_publish(),
                small_publish(&format!("q/{i}"), qos1(i), false),
            ],
        );
        feed(&mut broker, publisher, chunk);
    }
    let per = held_per(&region, N);
    assert_eq!(
        broker.stats().messages_out,
        N as u64,
        "every message was queued"
    );
    per
}

/// A live subscriber that does not acknowledge: QoS 1 messages in flight.
fn in_flight() -> f64 {
    let mut broker = Broker::new(BrokerConfig::default());
    let sub = connected(&mut broker, V5, client(V5, "sub", true));
    feed(&mut broker, sub, encode(V5, vec![subscribe("q/#")]));
    let publisher = connected(&mut broker, V3, client(V3, "pub", true));
    // Each chunk is built inside the region: what the broker does not keep of it is freed
    // there too.
    let region = Region::new(GLOBAL);
    for i in 0..N {
        let chunk = encode(
            V3,
            vec![
                big_publish(),
                small_publish(&format!("q/{i}"), qos1(i), false),
            ],
        );
        feed(&mut broker, publisher, chunk);
    }
    let per = held_per(&region, N);
    assert_eq!(broker.stats().messages_out, N as u64);
    per
}

/// Wills (and client identifiers) of connected clients: each CONNECT arrived with 16 KiB of
/// the client's next packet in the same read.
fn wills() -> f64 {
    let mut broker = Broker::new(BrokerConfig::default());
    let tail = partial_big(V5);
    // Each chunk is built inside the region: what the broker does not keep of it is freed
    // there too.
    let region = Region::new(GLOBAL);
    for i in 0..N {
        let chunk = {
            let mut c = client(V5, &format!("will-{i:04}"), true);
            c.will = Some(Will {
                topic: TopicName::new(&format!("w/{i}")).unwrap(),
                payload: Bytes::from_static(b"0123456789"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: WillProperties::default(),
            });
            let mut chunk = encode(V5, vec![Packet::from(c)]);
            chunk.extend_from_slice(&tail);
            chunk
        };
        let id = broker.open(now()).unwrap();
        feed(&mut broker, id, chunk);
    }
    let per = held_per(&region, N);
    assert_eq!(broker.stats().connections, N);
    per
}

/// Hooks that start an enhanced-authentication exchange for every client.
struct Challenge;

impl BrokerHooks for Challenge {
    fn authenticate(&mut self, _connect: &Connect) -> AuthDecision {
        AuthDecision::Continue(AuthProperties {
            authentication_method: Some(MqttString::new("X").unwrap()),
            ..AuthProperties::default()
        })
    }

    fn continue_authentication(&mut self, _client_id: &str, _auth: &Auth) -> AuthDecision {
        AuthDecision::Accept
    }
}

/// CONNECTs kept while their enhanced authentication goes on.
fn pending_connects() -> f64 {
    let mut broker = Broker::with_hooks(BrokerConfig::default(), Challenge);
    let tail = partial_big(V5);
    // Each chunk is built inside the region: what the broker does not keep of it is freed
    // there too.
    let region = Region::new(GLOBAL);
    for i in 0..N {
        let chunk = {
            let mut c = client(V5, &format!("auth-{i:04}"), true);
            c.properties.authentication_method = Some(MqttString::new("X").unwrap());
            let mut chunk = encode(V5, vec![Packet::from(c)]);
            chunk.extend_from_slice(&tail);
            chunk
        };
        let id = broker.open(now()).unwrap();
        feed(&mut broker, id, chunk);
    }
    let per = held_per(&region, N);
    assert_eq!(broker.stats().connections, N);
    per
}

/// Topic aliases a client set up (MQTT 5): the server session's alias map keeps the topic
/// for the life of the connection.
fn inbound_aliases() -> f64 {
    let mut broker = Broker::new(BrokerConfig::default());
    let ids: Vec<ConnectionId> = (0..N)
        .map(|i| connected(&mut broker, V5, client(V5, &format!("alias-{i:04}"), true)))
        .collect();
    let region = Region::new(GLOBAL);
    for (i, id) in ids.iter().enumerate() {
        let mut small = Publish::new(
            TopicName::new(&format!("a/{i}")).unwrap(),
            QosPid::AtMostOnce,
            &b"0123456789"[..],
        );
        small.properties.topic_alias = std::num::NonZeroU16::new(1);
        let chunk = encode(V5, vec![big_publish(), Packet::Publish(small)]);
        feed(&mut broker, *id, chunk);
    }
    let per = held_per(&region, N);
    assert_eq!(broker.stats().connections, N);
    per
}

#[test]
fn kept_messages_do_not_pin_their_read_buffers() {
    // Per kept message: about its own size plus bookkeeping, not the 16 KiB read it came in.
    let retained = retained();
    let queued = offline_queue();
    let in_flight = in_flight();
    // Per connection: the session itself (~1.5 KiB, see `broker_memory`) plus its will or
    // pending CONNECT, not the 16 KiB read.
    let wills = wills();
    let pending = pending_connects();
    // Per connection, beyond what it held before: the alias map's topic.
    let aliases = inbound_aliases();
    println!(
        "bytes held: {retained:.0} per retained message, {queued:.0} per queued message, \
         {in_flight:.0} per in-flight message, {wills:.0} per connection with a will, \
         {pending:.0} per connection pending authentication, {aliases:.0} per inbound topic alias"
    );
    assert!(retained < 1024.0, "{retained} bytes per retained message");
    assert!(queued < 1024.0, "{queued} bytes per queued message");
    assert!(
        in_flight < 1024.0,
        "{in_flight} bytes per in-flight message"
    );
    assert!(wills < 6144.0, "{wills} bytes per connection with a will");
    assert!(pending < 6144.0, "{pending} bytes per pending connection");
    assert!(aliases < 1024.0, "{aliases} bytes per inbound topic alias");
}
