//! The `bench` program's publishers and subscribers, once with this project's client
//! (`mqtt_streaming_tokio`) and once with rumqttc (MQTT 3.1.1 and 5.0), driving the same workload:
//! the same stamped payloads, the same pacing, and the same in-flight window (at most `window`
//! messages handed to the library and not yet acknowledged, or for QoS 0 not yet written).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion, QoS, TopicFilter, TopicName};
use mqtt_streaming_session::{Message, SubscribeRequest};
use mqtt_streaming_tokio::{
    connect_endpoint, connect_tcp, Client, ClientEvents, ClientOptions, Endpoint, Event,
    PublishReceipt, TlsClient, TransportOptions,
};
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;

use crate::bench_raw::RawConn;
use crate::bench_stats::{self, Counters, Tracker};

/// How long connecting (CONNECT to CONNACK, SUBSCRIBE to SUBACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a publisher waits for its last acknowledgements after the publish phase.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean disconnect may take.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Which client library drives the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Library {
    /// `mqtt_streaming_tokio`'s client.
    Ours,
    /// rumqttc's `AsyncClient`.
    Rumqttc,
    /// No client library: pre-encoded packets over plain TCP (`bench_raw`).
    Raw,
}

impl Library {
    /// Its name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Library::Ours => "ours",
            Library::Rumqttc => "rumqttc",
            Library::Raw => "raw",
        }
    }
}

/// What every client of a run shares.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The broker.
    pub(crate) host: String,
    /// The broker's port.
    pub(crate) port: u16,
    /// MQTT 5.0 (`true`) or 3.1.1.
    pub(crate) v5: bool,
    /// 0, 1 or 2.
    pub(crate) qos: u8,
    /// Payload bytes (at least the stamp).
    pub(crate) size: usize,
    /// Messages per second per publisher; `None`: flat out.
    pub(crate) rate: Option<f64>,
    /// Messages handed over and not yet acknowledged (QoS 0: not yet written), per publisher.
    pub(crate) window: usize,
    /// Messages per publisher; `None`: until the stop flag.
    pub(crate) count: Option<u64>,
    /// This run's id, stamped into every payload.
    pub(crate) run: u32,
    /// The instant payload timestamps count from.
    pub(crate) base: Instant,
    /// Keep alive, seconds.
    pub(crate) keep_alive: u16,
    /// Our client's `ClientOptions::batch_acks`.
    pub(crate) batch_acks: bool,
    /// TLS (both libraries, with the same rustls configuration), or plain TCP.
    pub(crate) tls: Option<TlsClient>,
}

impl Plan {
    fn qos(&self) -> QoS {
        match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }
}

/// Shared by a run's tasks: the end of the publish phase and the counters.
#[derive(Debug, Default)]
pub(crate) struct Control {
    /// Set when the publish phase is over (duration reached).
    pub(crate) stop: AtomicBool,
    /// Progress counters.
    pub(crate) counters: Arc<Counters>,
}

/// What one publisher did.
#[derive(Debug, Default)]
pub(crate) struct PubResult {
    /// Messages handed to the library.
    pub(crate) sent: u64,
    /// Acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP) or, at QoS 0, written.
    pub(crate) acked: u64,
    /// Refused or failed publishes (error reason codes, closed connections).
    pub(crate) errors: u64,
    /// The first error, for the report.
    pub(crate) first_error: Option<String>,
    /// When the last message was handed over.
    pub(crate) last_send: Option<Instant>,
}

impl PubResult {
    /// Counts an error, keeping the first for the report.
    pub(crate) fn error(&mut self, e: impl ToString) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// Paces a publisher: message `n` is due at `start + n / rate` (catching up in a burst when
/// late); flat out without a rate.
struct Pacer {
    start: Instant,
    rate: Option<f64>,
    n: u64,
}

impl Pacer {
    async fn next(&mut self) {
        if let Some(rate) = self.rate {
            let due = self.start + Duration::from_secs_f64(self.n as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        self.n += 1;
    }
}

/// Whether message `seq` is still to be sent (count not reached, stop flag not set).
pub(crate) fn more(plan: &Plan, ctl: &Control, seq: u64) -> bool {
    !ctl.stop.load(Ordering::Relaxed) && plan.count.is_none_or(|c| seq < c)
}

/// A connected publisher.
pub(crate) enum Publisher {
    /// Ours.
    Ours(Client, ClientEvents),
    /// rumqttc, MQTT 3.1.1.
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    /// rumqttc, MQTT 5.0.
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
    /// No client library.
    Raw(Box<RawConn>),
}

/// A connected, subscribed subscriber.
pub(crate) enum Subscriber {
    /// Ours.
    Ours(Client, ClientEvents),
    /// rumqttc, MQTT 3.1.1.
    V4(rumqttc::AsyncClient, Box<rumqttc::EventLoop>),
    /// rumqttc, MQTT 5.0.
    V5(rumqttc::v5::AsyncClient, Box<rumqttc::v5::EventLoop>),
    /// No client library.
    Raw(Box<RawConn>),
}

/// Connects a client of ours with client id `id`, over TLS when the plan says so.
async fn connect_ours(plan: &Plan, id: &str) -> Result<(Client, ClientEvents), String> {
    let version = if plan.v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let mut connect = Connect::new(
        version,
        MqttString::new(id).map_err(|e| format!("client id {id}: {e}"))?,
    );
    connect.keep_alive = plan.keep_alive;
    connect.clean_start = true;
    let mut options = ClientOptions::new(connect);
    options.session.max_inflight = plan.window.clamp(1, u16::MAX as usize) as u16;
    options.batch_acks = plan.batch_acks;
    options.session.max_packet_size = (plan.size as u32).saturating_add(1024).max(1 << 20);
    let connecting = async {
        match &plan.tls {
            Some(tls) => {
                let endpoint = Endpoint::tls(plan.host.clone(), plan.port);
                let transport = TransportOptions::new()
                    .tls(tls.clone())
                    .connect_timeout(CONNECT_TIMEOUT);
                connect_endpoint(&endpoint, &transport, options).await
            }
            None => connect_tcp((plan.host.as_str(), plan.port), options).await,
        }
    };
    let (client, mut events) = timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| format!("{id}: timed out connecting"))?
        .map_err(|e| format!("{id}: cannot connect: {e}"))?;
    match events.recv().await {
        Some(Event::Connected(_)) => Ok((client, events)),
        other => Err(format!("{id}: no CONNACK: {other:?}")),
    }
}

/// The rumqttc options of both versions, set alike (TLS with the plan's rustls configuration).
macro_rules! rumqttc_options {
    ($module:path, $plan:expr, $id:expr) => {{
        use $module as m;
        let mut options = m::MqttOptions::new($id, $plan.host.clone(), $plan.port);
        options.set_keep_alive(Duration::from_secs($plan.keep_alive.max(5).into()));
        if let Some(tls) = &$plan.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.config().clone()),
            ));
        }
        options
    }};
}

/// Polls a rumqttc event loop until `$until` matches an event (connect, subscribe).
macro_rules! rumqttc_poll_until {
    ($eventloop:expr, $id:expr, $what:literal, $until:pat) => {{
        let wait = async {
            loop {
                match $eventloop.poll().await {
                    Ok($until) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(format!("{}: {}: {e}", $id, $what)),
                }
            }
        };
        timeout(CONNECT_TIMEOUT, wait)
            .await
            .map_err(|_| format!("{}: timed out waiting for {}", $id, $what))?
    }};
}

fn rumqttc_v4(plan: &Plan, id: &str) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let mut options = rumqttc_options!(rumqttc, plan, id);
    options.set_clean_session(true);
    options.set_inflight(plan.window.clamp(1, u16::MAX as usize) as u16);
    let max = (plan.size + 1024).max(1 << 20);
    options.set_max_packet_size(max, max);
    rumqttc::AsyncClient::new(options, plan.window.max(10))
}

fn rumqttc_v5(plan: &Plan, id: &str) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let mut options = rumqttc_options!(rumqttc::v5, plan, id);
    options.set_clean_start(true);
    options.set_outgoing_inflight_upper_limit(plan.window.clamp(1, u16::MAX as usize) as u16);
    options.set_max_packet_size(Some((plan.size as u32 + 1024).max(1 << 20)));
    rumqttc::v5::AsyncClient::new(options, plan.window.max(10))
}

fn rumqttc_qos_v4(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn rumqttc_qos_v5(qos: u8) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

impl Publisher {
    /// Connects publisher `id` with `library`.
    pub(crate) async fn connect(library: Library, plan: &Plan, id: &str) -> Result<Self, String> {
        match (library, plan.v5) {
            (Library::Raw, _) => Ok(Publisher::Raw(Box::new(RawConn::connect(plan, id).await?))),
            (Library::Ours, _) => {
                let (client, events) = connect_ours(plan, id).await?;
                Ok(Publisher::Ours(client, events))
            }
            (Library::Rumqttc, false) => {
                let (client, mut eventloop) = rumqttc_v4(plan, id);
                rumqttc_poll_until!(
                    eventloop,
                    id,
                    "CONNACK",
                    rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))
                )?;
                Ok(Publisher::V4(client, Box::new(eventloop)))
            }
            (Library::Rumqttc, true) => {
                let (client, mut eventloop) = rumqttc_v5(plan, id);
                rumqttc_poll_until!(
                    eventloop,
                    id,
                    "CONNACK",
                    rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(_))
                )?;
                Ok(Publisher::V5(client, Box::new(eventloop)))
            }
        }
    }

    /// Publishes to `topic` as publisher `index` until the plan's count or the stop flag, then
    /// waits for the outstanding acknowledgements and disconnects.
    pub(crate) async fn run(
        self,
        plan: Arc<Plan>,
        ctl: Arc<Control>,
        index: u32,
        topic: String,
    ) -> PubResult {
        match self {
            Publisher::Raw(conn) => conn.publish(&plan, &ctl, index, &topic).await,
            Publisher::Ours(client, events) => {
                run_ours(client, events, &plan, &ctl, index, &topic).await
            }
            Publisher::V4(client, eventloop) => {
                let qos = rumqttc_qos_v4(plan.qos);
                let watch_acks = {
                    let plan = plan.clone();
                    move |eventloop, acks| acks_v4(eventloop, plan, acks)
                };
                run_rumqttc(&plan, &ctl, index, eventloop, watch_acks, {
                    let client = client.clone();
                    move |payload| {
                        let client = client.clone();
                        let topic = topic.clone();
                        async move { client.publish_bytes(topic, qos, false, payload).await }
                    }
                })
                .await
                .finish(client.disconnect().await.err())
                .await
            }
            Publisher::V5(client, eventloop) => {
                let qos = rumqttc_qos_v5(plan.qos);
                let watch_acks = {
                    let plan = plan.clone();
                    move |eventloop, acks| acks_v5(eventloop, plan, acks)
                };
                run_rumqttc(&plan, &ctl, index, eventloop, watch_acks, {
                    let client = client.clone();
                    move |payload| {
                        let client = client.clone();
                        let topic = topic.clone();
                        async move { client.publish_bytes(topic, qos, false, payload).await }
                    }
                })
                .await
                .finish(client.disconnect().await.err())
                .await
            }
        }
    }
}

async fn run_ours(
    client: Client,
    events: ClientEvents,
    plan: &Plan,
    ctl: &Control,
    index: u32,
    topic: &str,
) -> PubResult {
    let mut result = PubResult::default();
    let topic = match TopicName::new(topic) {
        Ok(topic) => topic,
        Err(e) => {
            result.error(format!("topic {topic}: {e}"));
            return result;
        }
    };
    let qos = plan.qos();
    let window = plan.window.max(1);
    let mut in_flight: VecDeque<PublishReceipt> = VecDeque::with_capacity(window);
    let mut pacer = Pacer {
        start: Instant::now(),
        rate: plan.rate,
        n: 0,
    };
    let settle =
        |outcome: Result<mqtt_streaming_tokio::PublishOutcome, mqtt_streaming_tokio::Error>,
         result: &mut PubResult| match outcome {
            Ok(outcome) if outcome.is_success() => {
                result.acked += 1;
                ctl.counters.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(outcome) => result.error(format!("refused: {}", outcome.reason_code)),
            Err(e) => result.error(e),
        };
    let mut seq = 0;
    while more(plan, ctl, seq) {
        pacer.next().await;
        if !more(plan, ctl, seq) {
            break;
        }
        if in_flight.len() >= window {
            let oldest = in_flight.pop_front().expect("window is not empty");
            settle(oldest.await, &mut result);
        }
        let payload = bench_stats::payload(plan.size, plan.run, index, seq, plan.base);
        match client
            .begin_publish(Message::new(topic.clone(), qos, payload))
            .await
        {
            Ok(receipt) => in_flight.push_back(receipt),
            Err(e) => {
                result.error(e);
                break;
            }
        }
        seq += 1;
        result.sent += 1;
        result.last_send = Some(Instant::now());
        ctl.counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    let drain = async {
        while let Some(receipt) = in_flight.pop_front() {
            settle(receipt.await, &mut result);
        }
    };
    if timeout(ACK_TIMEOUT, drain).await.is_err() {
        result.error("timed out waiting for acknowledgements");
    }
    if let Ok(Err(e)) = timeout(DISCONNECT_TIMEOUT, client.disconnect()).await {
        result.error(format!("disconnect: {e}"));
    }
    drop(events);
    result
}

/// Acknowledgements seen by a rumqttc publisher's event loop task: each frees a window slot.
struct Acks {
    window: Arc<Semaphore>,
    acked: AtomicU64,
    error: Mutex<Option<String>>,
    counters: Arc<Counters>,
}

impl Acks {
    fn ack(&self) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        self.counters.acked.fetch_add(1, Ordering::Relaxed);
        self.window.add_permits(1);
    }

    fn fail(&self, e: String) {
        self.error.lock().expect("not poisoned").get_or_insert(e);
        self.window.close();
    }
}

/// rumqttc 3.1.1 event loop: frees a slot per PUBACK (QoS 1), PUBCOMP (QoS 2) or written
/// PUBLISH (QoS 0), until DISCONNECT is written or the connection fails.
async fn acks_v4(mut eventloop: Box<rumqttc::EventLoop>, plan: Arc<Plan>, acks: Arc<Acks>) {
    use rumqttc::{Event, Outgoing, Packet};
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) if plan.qos == 1 => acks.ack(),
            Ok(Event::Incoming(Packet::PubComp(_))) if plan.qos == 2 => acks.ack(),
            Ok(Event::Outgoing(Outgoing::Publish(_))) if plan.qos == 0 => acks.ack(),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => return acks.fail(e.to_string()),
        }
    }
}

/// rumqttc 5.0 event loop: as [`acks_v4`].
async fn acks_v5(mut eventloop: Box<rumqttc::v5::EventLoop>, plan: Arc<Plan>, acks: Arc<Acks>) {
    use rumqttc::v5::{Event, Incoming};
    use rumqttc::Outgoing;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::PubAck(_))) if plan.qos == 1 => acks.ack(),
            Ok(Event::Incoming(Incoming::PubComp(_))) if plan.qos == 2 => acks.ack(),
            Ok(Event::Outgoing(Outgoing::Publish(_))) if plan.qos == 0 => acks.ack(),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => return acks.fail(e.to_string()),
        }
    }
}

/// A rumqttc publisher's run, before its disconnect.
struct RumqttcRun {
    result: PubResult,
    events: tokio::task::JoinHandle<()>,
}

impl RumqttcRun {
    /// Accounts for the disconnect and lets the event loop write it.
    async fn finish<E: ToString>(mut self, disconnect_error: Option<E>) -> PubResult {
        if let Some(e) = disconnect_error {
            self.result.error(format!("disconnect: {}", e.to_string()));
        }
        if timeout(DISCONNECT_TIMEOUT, &mut self.events).await.is_err() {
            self.events.abort();
        }
        self.result
    }
}

async fn run_rumqttc<L, W, WF, P, PF, E>(
    plan: &Plan,
    ctl: &Control,
    index: u32,
    eventloop: L,
    watch_acks: W,
    publish: P,
) -> RumqttcRun
where
    W: FnOnce(L, Arc<Acks>) -> WF,
    WF: std::future::Future<Output = ()> + Send + 'static,
    P: Fn(bytes::Bytes) -> PF,
    PF: std::future::Future<Output = Result<(), E>>,
    E: ToString,
{
    let window = plan.window.max(1);
    let acks = Arc::new(Acks {
        window: Arc::new(Semaphore::new(window)),
        acked: AtomicU64::new(0),
        error: Mutex::new(None),
        counters: ctl.counters.clone(),
    });
    let events = tokio::spawn(watch_acks(eventloop, acks.clone()));
    let mut result = PubResult::default();
    let mut pacer = Pacer {
        start: Instant::now(),
        rate: plan.rate,
        n: 0,
    };
    let mut seq = 0;
    while more(plan, ctl, seq) {
        pacer.next().await;
        if !more(plan, ctl, seq) {
            break;
        }
        match acks.window.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => break, // the connection failed
        }
        let payload = bench_stats::payload(plan.size, plan.run, index, seq, plan.base);
        if let Err(e) = publish(payload).await {
            result.error(e.to_string());
            break;
        }
        seq += 1;
        result.sent += 1;
        result.last_send = Some(Instant::now());
        ctl.counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    // Every slot back: everything sent was acknowledged.
    let all = u32::try_from(window).unwrap_or(u32::MAX);
    match timeout(ACK_TIMEOUT, acks.window.acquire_many(all)).await {
        Ok(Ok(permits)) => permits.forget(),
        Ok(Err(_)) => {} // the connection failed: reported below
        Err(_) => result.error("timed out waiting for acknowledgements"),
    }
    result.acked = acks.acked.load(Ordering::Relaxed);
    if let Some(e) = acks.error.lock().expect("not poisoned").take() {
        result.error(e);
    }
    let unacked = result.sent.saturating_sub(result.acked);
    if unacked > 0 && result.errors == 0 {
        result.error(format!("{unacked} messages not acknowledged"));
    }
    RumqttcRun { result, events }
}

impl Subscriber {
    /// Connects subscriber `id` with `library` and subscribes to `filter` at the plan's QoS.
    pub(crate) async fn connect(
        library: Library,
        plan: &Plan,
        id: &str,
        filter: &str,
    ) -> Result<Self, String> {
        match (library, plan.v5) {
            (Library::Raw, _) => {
                let mut conn = RawConn::connect(plan, id).await?;
                conn.subscribe(id, filter, plan.qos).await?;
                Ok(Subscriber::Raw(Box::new(conn)))
            }
            (Library::Ours, _) => {
                let (client, events) = connect_ours(plan, id).await?;
                let filter = TopicFilter::new(filter).map_err(|e| format!("filter: {e}"))?;
                let suback = timeout(
                    CONNECT_TIMEOUT,
                    client.subscribe(SubscribeRequest::new(filter, plan.qos())),
                )
                .await
                .map_err(|_| format!("{id}: timed out subscribing"))?
                .map_err(|e| format!("{id}: subscribe: {e}"))?;
                if suback.reason_codes.iter().any(|c| c.is_error()) {
                    return Err(format!("{id}: subscription refused: {suback:?}"));
                }
                Ok(Subscriber::Ours(client, events))
            }
            (Library::Rumqttc, false) => {
                let (client, mut eventloop) = rumqttc_v4(plan, id);
                rumqttc_poll_until!(
                    eventloop,
                    id,
                    "CONNACK",
                    rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))
                )?;
                client
                    .subscribe(filter, rumqttc_qos_v4(plan.qos))
                    .await
                    .map_err(|e| format!("{id}: subscribe: {e}"))?;
                rumqttc_poll_until!(
                    eventloop,
                    id,
                    "SUBACK",
                    rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))
                )?;
                Ok(Subscriber::V4(client, Box::new(eventloop)))
            }
            (Library::Rumqttc, true) => {
                let (client, mut eventloop) = rumqttc_v5(plan, id);
                rumqttc_poll_until!(
                    eventloop,
                    id,
                    "CONNACK",
                    rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::ConnAck(_))
                )?;
                client
                    .subscribe(filter, rumqttc_qos_v5(plan.qos))
                    .await
                    .map_err(|e| format!("{id}: subscribe: {e}"))?;
                rumqttc_poll_until!(
                    eventloop,
                    id,
                    "SUBACK",
                    rumqttc::v5::Event::Incoming(rumqttc::v5::Incoming::SubAck(_))
                )?;
                Ok(Subscriber::V5(client, Box::new(eventloop)))
            }
        }
    }

    /// Receives into `tracker` until `done` turns true or the connection ends; returns the
    /// tracker and the error that ended the connection, if one did.
    pub(crate) async fn run(
        self,
        mut tracker: Tracker,
        done: watch::Receiver<bool>,
    ) -> (Tracker, Option<String>) {
        let error = self
            .receive(|payload, at| tracker.on_payload_at(payload, at), done)
            .await;
        tracker.flush();
        (tracker, error)
    }

    /// Hands every received payload, with the instant it arrived, to `on_payload` until `done` turns true or the
    /// connection ends, then disconnects; returns the error that ended the connection.
    async fn receive(
        self,
        mut on_payload: impl FnMut(&[u8], Instant),
        mut done: watch::Receiver<bool>,
    ) -> Option<String> {
        let mut error = None;
        match self {
            Subscriber::Raw(conn) => error = conn.receive(on_payload, done).await,
            Subscriber::Ours(client, mut events) => {
                loop {
                    tokio::select! {
                        event = events.recv() => match event {
                            Some(Event::Message { publish, .. }) => on_payload(&publish.payload, Instant::now()),
                            Some(Event::Closed { reason, .. }) => {
                                error = Some(format!("connection closed: {reason:?}"));
                                break;
                            }
                            None => break,
                            Some(_) => {}
                        },
                        _ = done.wait_for(|d| *d) => break,
                    }
                }
                let _ = timeout(DISCONNECT_TIMEOUT, client.disconnect()).await;
            }
            Subscriber::V4(client, mut eventloop) => {
                use rumqttc::{Event, Outgoing, Packet};
                loop {
                    tokio::select! {
                        event = eventloop.poll() => match event {
                            Ok(Event::Incoming(Packet::Publish(p))) => on_payload(&p.payload, Instant::now()),
                            Ok(_) => {}
                            Err(e) => {
                                error = Some(e.to_string());
                                break;
                            }
                        },
                        _ = done.wait_for(|d| *d) => break,
                    }
                }
                if error.is_none() && client.try_disconnect().is_ok() {
                    let _ = timeout(DISCONNECT_TIMEOUT, async {
                        while let Ok(event) = eventloop.poll().await {
                            if let Event::Outgoing(Outgoing::Disconnect) = event {
                                break;
                            }
                        }
                    })
                    .await;
                }
            }
            Subscriber::V5(client, mut eventloop) => {
                use rumqttc::v5::{Event, Incoming};
                use rumqttc::Outgoing;
                loop {
                    tokio::select! {
                        event = eventloop.poll() => match event {
                            Ok(Event::Incoming(Incoming::Publish(p))) => on_payload(&p.payload, Instant::now()),
                            Ok(_) => {}
                            Err(e) => {
                                error = Some(e.to_string());
                                break;
                            }
                        },
                        _ = done.wait_for(|d| *d) => break,
                    }
                }
                if error.is_none() && client.try_disconnect().is_ok() {
                    let _ = timeout(DISCONNECT_TIMEOUT, async {
                        while let Ok(event) = eventloop.poll().await {
                            if let Event::Outgoing(Outgoing::Disconnect) = event {
                                break;
                            }
                        }
                    })
                    .await;
                }
            }
        }
        error
    }

    /// Keeps an idle subscriber alive (rumqttc needs its event loop polled for keep alive)
    /// until `done`, then disconnects.
    pub(crate) async fn idle(self, done: watch::Receiver<bool>) {
        let _ = self.receive(|_, _| {}, done).await;
    }
}
