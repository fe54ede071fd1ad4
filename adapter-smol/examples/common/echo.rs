//! An in-process MQTT server written with the server flow, runtime-free (the
//! `ServerConnection` type is the same in every adapter): it accepts every client, grants
//! every subscription, and sends every message back to its sender when one of its
//! subscriptions matches (at the lower of the two QoS).

use crate::adapter::{ConnectionEvent, Error, ServerConnection};
use mqtt_streaming_proto::{topic_matches, AckProperties, ConnAckProperties, QoS, TopicFilter};
use mqtt_streaming_session::Message;

/// Serves `conn` until it closes.
pub(crate) async fn echo(mut conn: ServerConnection) -> Result<(), Error> {
    let mut subscriptions: Vec<(TopicFilter, QoS)> = Vec::new();
    while let Some(event) = conn.events().recv().await {
        match event {
            ConnectionEvent::Connect(_) => conn.accept(ConnAckProperties::default(), None).await?,
            ConnectionEvent::Subscribe(subscribe) => {
                let mut codes = Vec::new();
                for s in subscribe.subscriptions {
                    codes.push(mqtt_streaming_proto::ReasonCode::granted(s.options.qos));
                    subscriptions.push((s.filter, s.options.qos));
                }
                conn.suback(subscribe.packet_id, codes, AckProperties::default())
                    .await?;
            }
            ConnectionEvent::Message { publish, .. } => {
                let granted = subscriptions
                    .iter()
                    .filter(|(f, _)| topic_matches(f.as_str(), publish.topic.as_str()))
                    .map(|(_, qos)| *qos)
                    .max();
                if let Some(granted) = granted {
                    let qos = publish.qos_pid.qos().min(granted);
                    // Hand it over without waiting for the client's acknowledgement.
                    let _receipt = conn
                        .begin_publish(Message::new(publish.topic, qos, publish.payload))
                        .await?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
