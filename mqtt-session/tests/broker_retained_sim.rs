//! Issue 10, item 3, end to end over the simulated network (client sessions, delays,
//! fragmentation): a subscriber whose session queue is far smaller than the retained messages
//! its SUBSCRIBE matches still gets every one of them ([MQTT-3.3.1-9] in 5.0), with RETAIN set,
//! each once, as it acknowledges the ones before.

mod broker_support;

use broker_support::*;
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_session::Message;

#[test]
fn every_retained_message_reaches_a_subscriber_with_a_small_queue_mqtt_3_3_1_9() {
    let mut net = net_with(BrokerConfig {
        server: BrokerConfig::default()
            .server
            .with_max_queued(8)
            .with_max_inflight(4),
        ..BrokerConfig::default()
    });
    let publisher = client(&mut net, V5, "pub", true, 0);
    for batch in 0..12 {
        for i in 0..50 {
            let t = format!("r/{:03}", batch * 50 + i);
            send(
                &mut net,
                publisher,
                Message::new(topic(&t), Q1, "v").retained(),
            );
        }
        net.run_for(SETTLE_MS);
    }
    assert_eq!(net.broker.stats().retained, 600);
    let subscriber = client(&mut net, V5, "sub", true, 0);
    subscribe(&mut net, subscriber, "r/#", Q1);
    net.run_for(20_000);
    let got = received(&net, subscriber);
    assert!(got.iter().all(|p| p.retain));
    let mut topics: Vec<String> = got.iter().map(|p| p.topic.as_str().to_string()).collect();
    assert_eq!(topics.len(), 600, "each once");
    topics.dedup();
    assert_eq!(topics.len(), 600);
    assert_eq!(net.broker.stats().dropped_queue_full, 0);
}
