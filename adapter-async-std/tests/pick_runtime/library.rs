// A downstream library's code, written once against `mqtt_rt` (which the library points at
// one adapter with a `cfg(feature = ...)` re-export, as in mqtt-streaming-smol's crate docs). The
// test includes it once per adapter to check that it compiles and works against all three.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use mqtt_streaming_proto::{ConnAckProperties, Connect, MqttString, ProtocolVersion, QoS, ReasonCode, TopicName};
use mqtt_streaming_session::Message;

/// Serves one client: accepts it; QoS 1 messages are acknowledged by the session.
pub(crate) async fn serve_one(server: &mqtt_rt::Server) -> Result<(), mqtt_rt::Error> {
    let mut conn = server.accept().await?;
    while let Some(event) = conn.events().recv().await {
        if let mqtt_rt::ConnectionEvent::Connect(_) = event {
            conn.accept(ConnAckProperties::default(), None).await?;
        }
    }
    Ok(())
}

/// Connects, publishes one QoS 1 message, disconnects: the server's PUBACK code.
pub(crate) async fn hello(addr: std::net::SocketAddr) -> Result<ReasonCode, mqtt_rt::Error> {
    let connect = Connect::new(ProtocolVersion::V5, MqttString::new("lib").unwrap());
    let (client, _events) = mqtt_rt::connect_tcp(addr, mqtt_rt::ClientOptions::new(connect)).await?;
    let topic = TopicName::new("lib/hello").unwrap();
    let outcome = client.publish(Message::new(topic, QoS::AtLeastOnce, "hi")).await?;
    client.disconnect().await?;
    Ok(outcome.reason_code)
}

/// A server on loopback and a client against it, concurrently in one task.
pub(crate) async fn round_trip() -> ReasonCode {
    let server = mqtt_rt::Server::bind("127.0.0.1:0", mqtt_rt::ServerOptions::default())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let code = {
        let mut serving = pin!(serve_one(&server));
        let mut client = pin!(hello(addr));
        let mut served = None;
        let code = poll_fn(|cx| {
            if served.is_none() {
                if let Poll::Ready(result) = serving.as_mut().poll(cx) {
                    served = Some(result);
                }
            }
            client.as_mut().poll(cx)
        })
        .await
        .unwrap();
        // The server ends once the client's DISCONNECT closed the connection.
        match served {
            Some(result) => result.unwrap(),
            None => serving.await.unwrap(),
        }
        code
    };
    server.shutdown().await;
    code
}
