//! The quickstart's client, written once for smol and async-std (and against the API every
//! adapter shares): connect, subscribe, publish at QoS 0, 1 and 2, print every event as a line
//! in the format of adapter-tokio's quickstart, disconnect.
//!
//! The including example names the adapter (`use adapter_smol as adapter;`), includes
//! `common/echo.rs` as `mod echo`, and provides on its runtime `async fn sleep(Duration)` and
//! `fn spawn(future) -> impl Future` (the task's output).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use mqtt_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
use mqtt_session::{Message, SubscribeRequest};

use crate::adapter::{connect_tcp, ClientEvents, ClientOptions, Event, Server, ServerOptions};

/// The command line: `--broker HOST:PORT` uses an outside broker instead of the in-process
/// server; `--help`.
pub(crate) enum Args {
    InProcess,
    Broker(String),
    Help,
}

pub(crate) fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (None, ..) => Ok(Args::InProcess),
        (Some("--help" | "-h"), None, _) => Ok(Args::Help),
        (Some("--broker"), Some(addr), None) => Ok(Args::Broker(addr)),
        _ => Err("usage: quickstart [--broker HOST:PORT]".to_owned()),
    }
}

pub(crate) const HELP: &str = "Start an in-process MQTT server (the server flow; or use your broker), \
then subscribe, publish at QoS 0, 1 and 2, and print what happens.\n\n\
Usage: quickstart [--broker HOST:PORT]\n\n\
Options:\n      --broker <HOST:PORT>  Use this broker instead of starting one\n      --help                Print this help";

/// The whole quickstart: the in-process server (unless `--broker`), the client, the shutdown.
pub(crate) async fn run(args: Args) -> Result<(), String> {
    let server = match args {
        Args::Help => {
            println!("{HELP}");
            return Ok(());
        }
        Args::Broker(addr) => return client(&addr).await,
        Args::InProcess => Server::bind("127.0.0.1:0", ServerOptions::default())
            .await
            .map_err(|e| format!("cannot start the in-process server: {e}"))?,
    };
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    println!("server    in-process (the server flow, echoing), listening on {addr}");
    // One connection: serve it until it closes, then hand the server back for its shutdown.
    let serving = crate::spawn(async move {
        let served = match server.accept().await {
            Ok(conn) => crate::echo::echo(conn).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        (server, served)
    });
    client(&addr.to_string()).await?;
    let (server, served) = timeout(Duration::from_secs(10), serving)
        .await
        .ok_or("the server did not see the connection close")?;
    served.map_err(|e| format!("the server failed: {e}"))?;
    server.shutdown().await;
    println!("server    shut down");
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

async fn next_message(events: &mut ClientEvents) -> Result<mqtt_proto::Publish, String> {
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
