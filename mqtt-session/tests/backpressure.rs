//! Back-pressure from a peer that does not read: once the transmit buffer holds a quarter more
//! than `max_transmit_buffer` bytes (publishes stop at `max_transmit_buffer`; the rest is room
//! for answers, so that a peer whose deliveries filled the buffer can still be read for its
//! acknowledgements), the sessions stop consuming input, so the answers they owe (PUBACKs,
//! PINGRESPs) cannot pile up without bound.

use bytes::BytesMut;
use mqtt_streaming_proto::{
    ConnAck, ConnAckProperties, Connect, MqttString, Packet, PacketId, ProtocolVersion, Publish,
    QosPid, ReasonCode, TopicName,
};
use mqtt_streaming_session::{ClientConfig, ClientSession, Instant, ServerConfig, ServerSession};

fn qos1_publishes(n: u16, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    for id in 1..=n {
        let publish = Publish::new(
            TopicName::new("t").unwrap(),
            QosPid::AtLeastOnce(PacketId::new(id).unwrap()),
            "x",
        );
        Packet::Publish(publish).encode(version, &mut buf).unwrap();
    }
    buf
}

#[test]
fn client_stops_reading_while_its_transmit_buffer_is_full() {
    let now = Instant::from_millis(0);
    let config = ClientConfig::default().with_max_transmit_buffer(16);
    let mut client: ClientSession<()> = ClientSession::new(config);
    client
        .connect(
            now,
            Connect::new(ProtocolVersion::V3_1_1, MqttString::new("c").unwrap()),
        )
        .unwrap();
    let mut out = BytesMut::new();
    let _ = client.poll_transmit(now, &mut out);
    let mut read = BytesMut::new();
    Packet::from(ConnAck::new(ReasonCode::Success))
        .encode(ProtocolVersion::V3_1_1, &mut read)
        .unwrap();
    client.handle_read(now, &mut read);
    while client.poll_event().is_some() {}

    let mut read = qos1_publishes(20, ProtocolVersion::V3_1_1);
    let total = read.len();
    let each = total / 20;
    assert!(client.wants_read());
    client.handle_read(now, &mut read);
    // Five PUBACKs (4 bytes each) fill the 16-byte buffer and its 4 bytes of room for
    // answers; the rest stays unread, and the session says so: a driver reads no more from
    // the transport.
    assert!(!client.wants_read());
    let mut out = BytesMut::new();
    assert_eq!(client.poll_transmit(now, &mut out), 20);
    assert!(
        client.wants_read(),
        "drained: the session wants input again"
    );
    assert_eq!(
        read.len(),
        total - 5 * each,
        "only five PUBLISHes were consumed"
    );
    // Drained: reading resumes.
    client.handle_read(now, &mut read);
    assert_eq!(read.len(), total - 10 * each);
}

#[test]
fn server_stops_reading_while_its_transmit_buffer_is_full() {
    let now = Instant::from_millis(0);
    let config = ServerConfig::default().with_max_transmit_buffer(16);
    let mut server: ServerSession<()> = ServerSession::new(config, now);
    let mut read = BytesMut::new();
    Packet::from(Connect::new(
        ProtocolVersion::V3_1_1,
        MqttString::new("c").unwrap(),
    ))
    .encode(ProtocolVersion::V3_1_1, &mut read)
    .unwrap();
    server.handle_read(now, &mut read);
    server
        .accept(now, ConnAckProperties::default(), None)
        .unwrap();
    let mut out = BytesMut::new();
    let _ = server.poll_transmit(now, &mut out);

    // A client that floods PINGREQs and never reads the PINGRESPs.
    let mut read = BytesMut::new();
    for _ in 0..100 {
        Packet::PingReq
            .encode(ProtocolVersion::V3_1_1, &mut read)
            .unwrap();
    }
    assert!(server.wants_read());
    server.handle_read(now, &mut read);
    assert_eq!(
        server.transmit_len(),
        20,
        "ten PINGRESPs (the 16 bytes and the room for answers), then reading stops"
    );
    assert_eq!(read.len(), 200 - 20);
    assert!(!server.wants_read());
    let mut out = BytesMut::new();
    let _ = server.poll_transmit(now, &mut out);
    assert!(
        server.wants_read(),
        "drained: the session wants input again"
    );
    server.handle_read(now, &mut read);
    assert_eq!(read.len(), 200 - 40);
}
