//! The quickstart: an embedded broker on 127.0.0.1 (an ephemeral port), one client that
//! subscribes and publishes at QoS 0, 1 and 2, every event printed as a line.
//!
//! ```text
//! cargo run -p adapter-tokio --example quickstart
//! cargo run -p adapter-tokio --example quickstart -- --broker test.mosquitto.org:1883
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use adapter_tokio::{connect_tcp, BrokerServer, ClientOptions, Event};
use clap::Parser;
use mqtt_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
use mqtt_session::broker::BrokerConfig;
use mqtt_session::{Message, SubscribeRequest};

/// Start an embedded MQTT broker (or use yours), then subscribe, publish at QoS 0, 1 and 2,
/// and print what happens.
#[derive(Parser, Debug)]
#[command(name = "quickstart", disable_help_flag = true)]
struct Args {
    /// Use this broker (HOST:PORT) instead of starting one.
    #[arg(long = "broker", value_name = "HOST:PORT")]
    broker: Option<String>,
    /// Print this help.
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    // 1. A broker: the embedded one on an ephemeral port, or the one given.
    let (addr, embedded) = match args.broker {
        Some(addr) => (addr, None),
        None => {
            let broker = BrokerServer::bind("127.0.0.1:0", BrokerConfig::default())
                .await
                .map_err(|e| format!("cannot start the embedded broker: {e}"))?;
            let local: SocketAddr = broker.local_addr().map_err(|e| e.to_string())?;
            println!("broker    embedded, listening on {local}");
            (local.to_string(), Some(broker.spawn()))
        }
    };

    // 2. A client: MQTT 5, keep alive 30 s.
    let client_id = format!("quickstart-{}", std::process::id());
    let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new(&client_id).unwrap());
    connect.keep_alive = 30;
    let connecting = connect_tcp(addr.as_str(), ClientOptions::new(connect));
    let (client, mut events) = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| format!("timed out connecting to {addr}"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    if let Some(Event::Connected(connack)) = events.recv().await {
        println!(
            "connected to {addr} as {client_id} (MQTT 5.0, session present: {})",
            connack.session_present
        );
    }

    // 3. Subscribe.
    let base = format!("quickstart/{}", std::process::id());
    let filter = TopicFilter::new(&format!("{base}/#")).unwrap();
    let suback = client
        .subscribe(SubscribeRequest::new(filter.clone(), QoS::ExactlyOnce))
        .await
        .map_err(|e| format!("subscribe failed: {e}"))?;
    println!("subscribed to {filter}: {}", suback.reason_codes[0]);

    // 4. Publish at each QoS; each publish resolves on the broker's acknowledgement, then
    //    the message comes back through the subscription.
    for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = TopicName::new(&format!("{base}/qos{n}")).unwrap();
        let payload = format!("hello at QoS {n}");
        let outcome = client
            .publish(Message::new(topic.clone(), qos, payload))
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
        let received = tokio::time::timeout(Duration::from_secs(10), async {
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
        })
        .await
        .map_err(|_| "the message did not come back in time".to_owned())??;
        println!(
            "received  {} (QoS {}): {:?}",
            received.topic,
            received.qos_pid.qos() as u8,
            String::from_utf8_lossy(&received.payload)
        );
    }

    // 5. Disconnect gracefully, then stop the embedded broker.
    client
        .disconnect()
        .await
        .map_err(|e| format!("disconnect failed: {e}"))?;
    println!("disconnected");
    if let Some(broker) = embedded {
        let stats = broker.stats().await.unwrap_or_default();
        broker.shutdown().await;
        println!(
            "broker    shut down ({} messages in, {} out, {} connection)",
            stats.messages_in, stats.messages_out, stats.connections_total
        );
    }
    Ok(())
}
