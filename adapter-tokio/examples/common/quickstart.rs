//! The quickstart, written once for smol and async-std (and against the API every adapter
//! shares): the embedded broker on 127.0.0.1 (an ephemeral port), a client that connects,
//! subscribes, publishes at QoS 0, 1 and 2, printing every event as a line in the format of
//! mqtt-streaming-tokio's quickstart, disconnects, and the broker's shutdown.
//!
//! The including example names the adapter (`use mqtt_streaming_smol as adapter;`) and provides
//! `async fn sleep(Duration)` on its runtime.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::{Message, SubscribeRequest};

use crate::adapter::{connect_tcp, BrokerServer, ClientEvents, ClientOptions, Event};

/// The command line: `--broker HOST:PORT` uses an outside broker instead of the embedded one;
/// `--help`.
pub(crate) enum Args {
    Embedded,
    Broker(String),
    Help,
}

pub(crate) fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => Ok(Args::Embedded),
        (Some("--help" | "-h"), None, _) => Ok(Args::Help),
        (Some("--broker"), Some(addr), None) => Ok(Args::Broker(addr)),
        _ => Err("usage: quickstart [--broker HOST:PORT]".to_owned()),
    }
}

pub(crate) const HELP: &str = "Start an embedded MQTT broker (or use yours), then subscribe, \
publish at QoS 0, 1 and 2, and print what happens.\n\n\
Usage: quickstart [--broker HOST:PORT]\n\n\
Options:\n      --broker <HOST:PORT>  Use this broker (HOST:PORT) instead of starting one\n      --help                Print this help";

/// The whole quickstart: the embedded broker (unless `--broker`), the client, the broker's
/// shutdown with its counters.
pub(crate) async fn run(args: Args) -> Result<(), String> {
    let broker = match args {
        Args::Help => {
            println!("{HELP}");
            return Ok(());
        }
        Args::Broker(addr) => return client(&addr).await,
        Args::Embedded => BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
            .await
            .map_err(|e| format!("cannot start the embedded broker: {e}"))?,
    };
    let addr: SocketAddr = broker.local_addr().map_err(|e| e.to_string())?;
    println!("broker    embedded, listening on {addr}");
    let broker = broker.spawn();
    client(&addr.to_string()).await?;
    let stats = broker.stats().await.unwrap_or_default();
    broker.shutdown().await;
    println!(
        "broker    shut down ({} messages in, {} out, {} connection)",
        stats.messages_in, stats.messages_out, stats.connections_total
    );
    Ok(())
}

/// `future`'s output, or `None` when `duration` passes first.
pub(crate) async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut sleep = pin!(crate::sleep(duration));
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        sleep.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Connects to `addr`, subscribes, publishes at each QoS and prints each event.
pub(crate) async fn client(addr: &str) -> Result<(), String> {
    let pid = std::process::id();
    let client_id = format!("quickstart-{pid}");
    let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new(&client_id).unwrap());
    connect.keep_alive = 30;
    let (client, mut events) = timeout(
        Duration::from_secs(10),
        connect_tcp(addr.to_owned(), ClientOptions::new(connect)),
    )
    .await
    .ok_or_else(|| format!("timed out connecting to {addr}"))?
    .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    if let Some(Event::Connected(connack)) = events.recv().await {
        println!(
            "connected to {addr} as {client_id} (MQTT 5.0, session present: {})",
            connack.session_present
        );
    }

    let base = format!("quickstart/{pid}");
    let filter = TopicFilter::new(&format!("{base}/#")).unwrap();
    let suback = client
        .subscribe(SubscribeRequest::new(filter.clone(), QoS::ExactlyOnce))
        .await
        .map_err(|e| format!("subscribe failed: {e}"))?;
    println!("subscribed to {filter}: {}", suback.reason_codes[0]);

    for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = TopicName::new(&format!("{base}/qos{n}")).unwrap();
        let outcome = client
            .publish(Message::new(
                topic.clone(),
                qos,
                format!("hello at QoS {n}"),
            ))
            .await
            .map_err(|e| format!("publish failed: {e}"))?;
        let how = match qos {
            QoS::AtMostOnce => "written to the socket",
            QoS::AtLeastOnce => "PUBACK",
            QoS::ExactlyOnce => "PUBCOMP",
        };
        println!(
            "published QoS {n} to {topic}: {how}, {}",
            outcome.reason_code
        );
        let received = timeout(Duration::from_secs(10), next_message(&mut events))
            .await
            .ok_or("the message did not come back in time")??;
        println!(
            "received  {} (QoS {}): {:?}",
            received.topic,
            received.qos_pid.qos() as u8,
            String::from_utf8_lossy(&received.payload)
        );
    }

    client
        .disconnect()
        .await
        .map_err(|e| format!("disconnect failed: {e}"))?;
    println!("disconnected");
    Ok(())
}

async fn next_message(events: &mut ClientEvents) -> Result<mqtt_streaming_proto::Publish, String> {
    loop {
        match events.recv().await {
            Some(Event::Message { publish, .. }) => return Ok(publish),
            Some(Event::Closed { reason, .. }) => {
                return Err(format!("connection closed: {reason}"))
            }
            Some(_) => {}
            None => return Err("connection closed".to_owned()),
        }
    }
}
