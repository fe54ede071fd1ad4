//! Layer 8 (with `server` and `broker`): the client: [`connect_on`] / [`connect_tcp_on`], the
//! cloneable [`ClientOn`] handle, the [`ClientEvents`] stream, and session resumption on a new
//! transport ([`Reconnect`], or by itself with a [`ReconnectPolicy`]: [`connect_reconnecting_on`]).
//! Imports the layers below: `runtime`, `transport`, `net`, `error`, `shared`, `publish`,
//! `reconnect`, `driver`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mqtt_streaming_proto::{
    Auth, ConnAck, Connect, Disconnect, Publish, ReasonCode, SubAck, SubscribeProperties,
    Subscription, TopicFilter, UnsubAck,
};
use mqtt_streaming_session::{
    ClientConfig, ClientEvent, ClientSession, CloseReason, CommandError, InboundId, Initiator,
    Instant, Message, Rejected, SubscribeRequest, UnsubscribeRequest,
};
use tokio::sync::{mpsc, oneshot};

use crate::driver::{Channels, Driver, Role, Routed};
use crate::error::{Error, TryPublishError};
use crate::net::{Adapt, TcpConnect};
use crate::publish::{reply, PublishOutcome, PublishReceipt, PublishToken};
use crate::reconnect::{
    bounded_connector, sleeper, BoxFuture, Connector, Jitter, ReconnectPolicy, Sleeper,
};
use crate::runtime::{Clock, Runtime};
use crate::shared::{event_channel, CloseInfo, Events, Shared};
use crate::transport::{BoxTransport, Transport};

/// How to connect: the CONNECT packet (protocol version, client id, keep alive, clean start,
/// will, credentials, MQTT 5 properties: every connect option), the session's limits, and the
/// driver's channel sizes.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The CONNECT to send.
    pub connect: Connect,
    /// The session's limits and ack mode (manual acks: [`AckMode::Manual`](mqtt_streaming_session::AckMode)).
    pub session: ClientConfig,
    /// Capacity of each command channel from the handles to the driver (at least 1). With the
    /// session's own queue ([`ClientConfig::max_queued`]) it bounds how many publishes can wait.
    pub command_capacity: usize,
    /// Capacity of the event channel (at least 1). When the application does not read its
    /// events, the driver stops reading from the transport (back-pressure to the server).
    pub event_capacity: usize,
    /// How long a closing connection may take to write its last bytes and close the transport.
    pub linger: Duration,
    /// Keep the session when the connection is lost (default `false`).
    ///
    /// With `true`, a connection that ends for any reason other than
    /// [`disconnect`](ClientOn::disconnect) (transport lost, keep alive timeout, the server's
    /// DISCONNECT, a protocol violation...) reports [`Event::Closed`] with `resumable: true` and the driver stays, holding the
    /// session, as long as a client handle exists: publishes waiting for their
    /// acknowledgement keep waiting, new ones are queued (bounded), and
    /// [`Reconnect::reconnect`] resumes the session on a new transport. With `false`, the driver
    /// ends with the connection and waiting operations fail with [`Error::Closed`].
    ///
    /// For the server to keep its side of the session, connect with Clean Start 0 (MQTT
    /// 3.1.1: the session lasts as long as the server keeps it) or, in MQTT 5, a Session Expiry
    /// Interval above 0.
    pub resumable: bool,
    /// Read acknowledgements in batches while the server owes many (default `true`).
    ///
    /// While at least 16 QoS 1 or 2 publishes wait for their acknowledgement, a wake-up
    /// waits until a quarter to a half of the acknowledgements owed (at most 16) are
    /// buffered, instead of reading each one as it comes: a publisher with a deep window then
    /// pays for one wake-up, one read and one write per batch instead of per message (about
    /// half the CPU per message against a broker that answers each PUBLISH at once; see
    /// BENCHMARKS.md). The batch waits only for acknowledgements that are certain to come,
    /// and if input stops arriving for a millisecond it reads what is there, so a PINGRESP or
    /// a message delivered to this client in the meantime is read at most about a
    /// millisecond later.
    ///
    /// Where the window rather than the broker limits throughput (a distant broker, a window
    /// of a few dozen), slots wait for the rest of their batch: up to about an eighth of the
    /// throughput at a window of 64, under 1% at the default window of 1,024. Turn it off
    /// for such a link with a small window.
    ///
    /// TCP on Linux (the socket's `SO_RCVLOWAT`), on every runtime: the TCP connections of
    /// `connect_tcp`, `reconnect_tcp` and `mqtt://` endpoints (`connect_url`,
    /// `connect_endpoint`, their reconnecting forms). Under TLS on tokio too (`mqtts://`
    /// through `connect_url` or `connect_endpoint`: the mark is lowered to the tail of a TLS
    /// record a read cut in two). Other transports read every byte at once: WebSocket, Unix
    /// sockets, TLS on smol and async-std, and streams handed to `connect`.
    pub batch_acks: bool,
}

impl ClientOptions {
    /// Options for `connect` with default limits.
    pub fn new(connect: Connect) -> Self {
        Self {
            connect,
            session: ClientConfig::default(),
            command_capacity: 64,
            event_capacity: 256,
            linger: Duration::from_secs(5),
            resumable: false,
            batch_acks: true,
        }
    }

    /// These options with [`resumable`](Self::resumable) set: the session outlives lost
    /// connections and [`Reconnect`] resumes it.
    pub fn resumable(mut self) -> Self {
        self.resumable = true;
        self
    }
}

impl From<Connect> for ClientOptions {
    fn from(connect: Connect) -> Self {
        Self::new(connect)
    }
}

/// What the client reports on its [`ClientEvents`] stream. Operation outcomes are not here:
/// they resolve the futures of the operations themselves.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The server accepted the connection: the first event of each connection (after a
    /// [`Reconnect`], check `session_present`).
    Connected(Box<ConnAck>),
    /// An application message from the server. With `ack: Some`, the client is in manual-ack
    /// mode: acknowledge it with [`ack`](ClientOn::ack).
    Message {
        /// The PUBLISH (topic resolved when it used a topic alias).
        publish: Publish,
        /// The id to acknowledge it with (manual mode, QoS 1 and 2).
        ack: Option<InboundId>,
    },
    /// An AUTH packet from the server (MQTT 5 enhanced authentication): answer with
    /// [`auth`](ClientOn::auth).
    Auth(Auth),
    /// The connection ended; the last event of the connection. The transport is already
    /// closed.
    ///
    /// Once per connection that was handed to the driver by [`connect_on`] or got its CONNACK
    /// after a [`Reconnect`]: a reconnect that fails before its CONNACK reports through its
    /// own future instead.
    Closed {
        /// Who ended it.
        initiator: Initiator,
        /// Why.
        reason: CloseReason,
        /// The transport error, when the transport failed.
        io_error: Option<io::Error>,
        /// The session survived ([`ClientOptions::resumable`], and the close did not come from
        /// [`disconnect`](ClientOn::disconnect)): the driver waits for
        /// [`Reconnect::reconnect`], and more events follow. With `false` this is the last
        /// event.
        resumable: bool,
    },
    /// A client with a [`ReconnectPolicy`] lost its connection (or its last attempt failed):
    /// attempt `attempt` (from 1, counted since the last CONNACK) starts after `delay`.
    Reconnecting {
        /// Which attempt.
        attempt: u32,
        /// The pause before it (backoff with jitter).
        delay: Duration,
    },
    /// A reconnect attempt opens its transport (then sends CONNECT).
    Connecting {
        /// Which attempt.
        attempt: u32,
    },
    /// A reconnect attempt failed before its CONNACK (the transport could not be opened, the
    /// server refused or did not answer...). The next `Reconnecting` follows, unless
    /// [`ReconnectPolicy::max_attempts`] is reached: then this is the last event.
    ConnectFailed {
        /// Which attempt.
        attempt: u32,
        /// Why.
        error: Error,
    },
    /// After a reconnect to a server that had lost the session (Session Present 0), the
    /// client subscribed again to what it held ([`ReconnectPolicy::resubscribe`]); every
    /// SUBACK is in and the queued publishes are now released.
    Resubscribed {
        /// SUBSCRIBE filters sent again.
        filters: usize,
        /// How many of them the server refused (a SUBACK error code).
        refused: usize,
    },
}

/// The receiving end of a client's events ([`Events`]). `recv` gives `None` once the driver
/// has ended: after a `Closed` event with `resumable: false`, or after the last handle went or
/// `disconnect` was called while the session waited for a reconnect.
///
/// Read it: while it is full, the driver stops reading from the transport.
pub type ClientEvents = Events<Event>;

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// What the handles send the driver. Small (the larger requests are boxed, a publish's
/// message travels in its token), because every slot of the command channels has this size.
#[derive(Debug)]
pub(crate) enum Command {
    /// The message is in the token ([`PublishToken::take_message`]).
    Publish(PublishToken),
    Subscribe(Box<SubscribeRequest>, Reply<SubAck>),
    Unsubscribe(Box<UnsubscribeRequest>, Reply<UnsubAck>),
    Disconnect(Box<Disconnect>, Reply<()>),
    Ack(InboundId, ReasonCode, Reply<()>),
    Auth(Box<Auth>, Reply<()>),
    Reconnect(Box<ReconnectCommand>),
}

/// A new transport for the session, and the CONNECT to send on it (`None`: the last one, with
/// Clean Start 0).
pub(crate) struct ReconnectCommand {
    transport: BoxTransport,
    connect: Option<Connect>,
    reply: Reply<Box<ConnAck>>,
}

impl std::fmt::Debug for ReconnectCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectCommand")
            .field("connect", &self.connect)
            .finish_non_exhaustive()
    }
}

/// A handle to a client connection whose driver runs on the runtime `R` (`Client` in each
/// adapter: `mqtt_streaming_tokio::Client` is `ClientOn<TokioRuntime>`): cheap to clone (a channel
/// sender), usable from any task. The runtime only matters to [`Reconnect`], which takes
/// that runtime's transports.
///
/// Every async method documents its cancel safety. In short: an operation is *handed to the
/// driver* at the first point it can be (the command channel had room); dropping its future
/// before that drops the operation, dropping it after that only discards the outcome: the
/// operation itself carries on and the session stays consistent.
pub struct ClientOn<R> {
    ops: mpsc::Sender<Command>,
    control: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for ClientOn<R> {
    fn clone(&self) -> Self {
        Self {
            ops: self.ops.clone(),
            control: self.control.clone(),
            shared: self.shared.clone(),
            runtime: PhantomData,
        }
    }
}

impl<R> fmt::Debug for ClientOn<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// Connects over `transport` (any of the runtime's streams, see [`Adapt`]): sends the
/// CONNECT, spawns the connection's driver on `runtime` and waits for the CONNACK. Each
/// adapter's `connect` is this on its runtime.
///
/// Fails with [`Error::ConnectionRefused`] when the CONNACK refuses the connection (the
/// transport is then closed), and with [`Error::Closed`] or [`Error::Io`] when the connection
/// ends before a CONNACK.
///
/// Cancel safety: dropping the future before it resolves drops the handles, so the driver
/// disconnects and ends.
pub async fn connect_on<R: Adapt<Io>, Io>(
    runtime: R,
    transport: Io,
    options: ClientOptions,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    connect_transport(runtime, R::adapt(transport), options, None).await
}

/// Connects over TCP to `addr` (the runtime's own address types) with TCP_NODELAY set (small
/// packets leave at once instead of waiting for Nagle's algorithm), then as [`connect_on`].
/// Each adapter's `connect_tcp` is this on its runtime.
///
/// Cancel safe in the same way as [`connect_on`].
pub async fn connect_tcp_on<R: TcpConnect<A>, A>(
    runtime: R,
    addr: A,
    options: ClientOptions,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    let stream = R::connect(addr).await?;
    connect_transport(runtime, stream, options, None).await
}

/// Connects with a transport from `connector` (called again for every reconnect: TCP, TLS,
/// WebSocket... whatever it opens on the runtime `R`), and keeps the session connected by
/// itself: when the connection is lost, the driver waits as `policy` says, opens a new
/// transport and resumes the session, with no task of the application's involved. Each
/// adapter's `connect_reconnecting` is this on its runtime.
///
/// The first connection is made as [`connect_on`] makes it (with `options.connect` as given,
/// Clean Start included) and its failure is returned; every later one sends the same CONNECT
/// with Clean Start 0. `options.resumable` is implied. The state of the link is reported on
/// the event stream: [`Event::Closed`] (`resumable: true`), [`Event::Reconnecting`],
/// [`Event::Connecting`], [`Event::ConnectFailed`], [`Event::Connected`] (check
/// `session_present`) and [`Event::Resubscribed`]. Read the events (or drop the
/// [`ClientEvents`]): while the application holds them unread and the channel is full, the
/// driver stops reading from the transport.
///
/// # What is guaranteed across reconnects
///
/// - Every `publish` resolves exactly once: with the acknowledgement from whichever
///   connection got it, or with an error once the driver ends (`disconnect`, every handle
///   dropped, or [`ReconnectPolicy::max_attempts`] reached).
/// - While the link is down, `publish` queues the message in the session (bounded by
///   [`ClientConfig::max_queued`] and [`ClientConfig::max_queued_bytes`], overflow per
///   [`ClientConfig::queue_overflow`]); by default, once the queue is full `publish` waits for
///   room, which the reconnect loop (run by the driver, not by the application) makes. A task
///   awaiting a publish never needs another task to keep the link alive.
/// - When the server kept the session (Session Present 1): unacknowledged QoS 1 and 2 PUBLISHes
///   are re-sent with DUP set and unacknowledged PUBRELs re-sent, in order ([MQTT-4.4.0-1]),
///   before anything new; QoS 1 is delivered at least once, QoS 2 exactly once (the server
///   de-duplicates by packet identifier), and the order of each client's publishes is kept.
/// - When the server lost the session (Session Present 0, for example a broker restarted
///   without persistence): with [`ReconnectPolicy::resubscribe`], the client subscribes again
///   to every filter a SUBACK granted it (less what it unsubscribed), and the publishes queued
///   meanwhile are held until every SUBACK of that re-subscription is in: nothing published
///   while offline reaches a session without this client's subscriptions. With
///   [`ReconnectPolicy::republish`], unacknowledged QoS 1 and QoS 2 messages are published
///   again first, in order, as new messages; a QoS 2 message whose PUBREC had arrived is
///   complete (the server took it) and is not sent again.
///
/// And what is not:
///
/// - After a session loss, QoS 2 messages sent again may reach subscribers twice (the old
///   session may have taken them before it was lost); exactly once holds only while the
///   server keeps the session.
/// - Messages the server acknowledged but had not yet delivered when it lost its state are
///   gone: the server owned them.
/// - Messages sent to this client while its session did not exist on the server (between the
///   loss and the re-subscription's SUBACKs) are not delivered; other clients' publishes are
///   not held back by this client's re-subscription.
/// - A session can be resumed only under a client identifier: with an empty one (MQTT 3.1.1;
///   in 5.0 the server's Assigned Client Identifier is used for the reconnects), every
///   reconnect starts clean and is handled as a lost session.
/// - The server keeps a session only if the CONNECT asks it to (Clean Start 0 in 3.1.1, a
///   Session Expiry Interval above 0 in 5.0); otherwise every reconnect is a session loss.
/// - A subscription the server refuses when made again is reported
///   ([`Event::Resubscribed`]`{ refused, .. }`) and the queue is released all the same.
pub async fn connect_reconnecting_on<R, F, Fut, Io>(
    runtime: R,
    connector: F,
    options: ClientOptions,
    policy: ReconnectPolicy,
) -> Result<(ClientOn<R>, ClientEvents), Error>
where
    R: Adapt<Io>,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = io::Result<Io>> + Send + 'static,
{
    let connector = bounded_connector(runtime.clone(), policy.connect_timeout, move || {
        let opening = connector();
        Box::pin(async move {
            let io = opening.await?;
            Ok(Box::new(R::adapt(io)) as BoxTransport)
        })
    });
    connect_auto(runtime, connector, options, policy).await
}

/// [`connect_reconnecting_on`] over TCP to `addr` (TCP_NODELAY set), connecting again to the
/// same address. Each adapter's `connect_tcp_reconnecting` is this on its runtime.
pub async fn connect_tcp_reconnecting_on<R, A>(
    runtime: R,
    addr: A,
    options: ClientOptions,
    policy: ReconnectPolicy,
) -> Result<(ClientOn<R>, ClientEvents), Error>
where
    R: TcpConnect<A>,
    A: Clone + Send + Sync + 'static,
{
    let connector = bounded_connector(runtime.clone(), policy.connect_timeout, move || {
        let opening = R::connect(addr.clone());
        Box::pin(async move { Ok(Box::new(opening.await?) as BoxTransport) })
    });
    connect_auto(runtime, connector, options, policy).await
}

/// Connects with `connector` (already bounded in time and giving the engine's transport) and
/// reconnects by itself with it: the common part of the reconnecting entry points.
pub(crate) async fn connect_connector_on<R: Runtime>(
    runtime: R,
    connector: Connector,
    options: ClientOptions,
    policy: ReconnectPolicy,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    connect_auto(runtime, connector, options, policy).await
}

async fn connect_auto<R: Runtime>(
    runtime: R,
    connector: Connector,
    mut options: ClientOptions,
    policy: ReconnectPolicy,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    let first = connector().await?;
    options.resumable = true;
    options.session.requeue_on_session_loss = policy.republish;
    let auto = Auto::new(policy, connector, sleeper(runtime.clone()));
    connect_transport(runtime, first, options, Some(Box::new(auto))).await
}

/// Connects over `transport`, already the engine's [`Transport`] (what a runtime's `Dial`
/// gives: TLS, WebSocket, Unix...), then as [`connect_on`].
pub async fn connect_transport_on<R: Runtime>(
    runtime: R,
    transport: impl Transport,
    options: ClientOptions,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    connect_transport(runtime, transport, options, None).await
}

async fn connect_transport<R: Runtime, Io: Transport>(
    runtime: R,
    transport: Io,
    options: ClientOptions,
    auto: Option<Box<Auto>>,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    let clock = Clock::of::<R>();
    let mut session = ClientSession::new(options.session.clone());
    session
        .connect(clock.now(), options.connect.clone())
        .map_err(|rejected| Error::Rejected(rejected.error))?;
    let (ops_tx, ops_rx) = mpsc::channel(options.command_capacity.max(1));
    let (control_tx, control_rx) = mpsc::channel(options.command_capacity.max(1));
    let (events_tx, events) = event_channel(options.event_capacity);
    let (connected_tx, connected_rx) = oneshot::channel();
    let shared = Arc::new(Shared::default());
    let role = ClientRole {
        session,
        connected: Some(connected_tx),
        disconnects: Vec::new(),
        io_error: None,
        shared: shared.clone(),
        connect: options.connect,
        resumable: options.resumable,
        batch_acks: options.batch_acks,
        ending: false,
        awaiting_transport: false,
        transport: None,
        reconnecting: false,
        auto,
    };
    let channels = Channels {
        ops: ops_rx,
        control: control_rx,
        events: events_tx,
        shutdown: None,
    };
    let driver = Driver::new(
        &runtime,
        transport,
        role,
        clock,
        shared.clone(),
        channels,
        options.linger,
    );
    runtime.spawn(Box::new(driver).run());
    let client = ClientOn {
        ops: ops_tx,
        control: control_tx,
        shared,
        runtime: PhantomData,
    };
    reply(connected_rx, &client.shared).await?;
    Ok((client, events))
}

impl<R> ClientOn<R> {
    /// Publishes `message` and waits for the server's acknowledgement: the PUBACK (QoS 1) or
    /// PUBCOMP (QoS 2) with its reason code, or for QoS 0 until the bytes were written to the
    /// transport. Waits for room first when the command queue is full (back-pressure).
    ///
    /// An error reason code from the server (for example 0x87 Not authorized) is an `Ok`
    /// outcome: check [`PublishOutcome::is_success`].
    ///
    /// Cancel safety: if dropped while waiting for room, the message was not handed over and
    /// is dropped. Once handed over (the first poll does so when the queue has room), dropping
    /// the future only discards the outcome: the message is still published and acknowledged
    /// and the session is unaffected.
    ///
    /// Allocates once per call: the message travels to the driver, and the outcome back, in
    /// one shared allocation.
    pub async fn publish(&self, message: Message) -> Result<PublishOutcome, Error> {
        self.begin_publish(message).await?.await
    }

    /// Hands `message` to the driver, waiting for room in the command queue, and returns a
    /// receipt that resolves like [`publish`](Self::publish). Lets one task pipeline many
    /// publishes and await their acknowledgements later.
    ///
    /// Cancel safety: as `publish`; when this future completes, the message was handed over.
    pub async fn begin_publish(&self, message: Message) -> Result<PublishReceipt, Error> {
        let (token, receipt) = PublishToken::carrying(message, self.shared.clone());
        self.ops
            .send(Command::Publish(token))
            .await
            .map_err(|_| self.shared.closed_error())?;
        Ok(receipt)
    }

    /// Hands `message` to the driver without waiting: when the command queue is full (the
    /// session's bounded queue is full and the driver holds further commands back), the
    /// message comes back with [`Error::Rejected`]`(`[`CommandError::QueueFull`]`)`.
    pub fn try_publish(&self, message: Message) -> Result<PublishReceipt, TryPublishError> {
        let (token, receipt) = PublishToken::carrying(message, self.shared.clone());
        match self.ops.try_send(Command::Publish(token)) {
            Ok(()) => Ok(receipt),
            Err(error) => {
                let error = match error {
                    mpsc::error::TrySendError::Full(_) => Error::Rejected(CommandError::QueueFull),
                    mpsc::error::TrySendError::Closed(_) => self.shared.closed_error(),
                };
                // The command (and its token) was dropped unsent: the message is still in the
                // receipt.
                let message = receipt
                    .into_message()
                    .expect("an unsent publish keeps its message");
                Err(TryPublishError { error, message })
            }
        }
    }

    /// Subscribes and waits for the SUBACK: one reason code per filter, in order (the granted
    /// QoS, or an error code such as 0x87 Not authorized).
    ///
    /// Cancel safety: as [`publish`](Self::publish): once handed over, the subscription is
    /// made even if the future is dropped.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<SubAck, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(&self.ops, Command::Subscribe(Box::new(request), tx))
            .await?;
        reply(rx, &self.shared).await
    }

    /// Unsubscribes and waits for the UNSUBACK (reason codes in MQTT 5 only).
    ///
    /// Cancel safety: as [`subscribe`](Self::subscribe).
    pub async fn unsubscribe(&self, request: UnsubscribeRequest) -> Result<UnsubAck, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(&self.ops, Command::Unsubscribe(Box::new(request), tx))
            .await?;
        reply(rx, &self.shared).await
    }

    /// Acknowledges a message received in manual-ack mode with `reason_code` (Success, or in
    /// MQTT 5 an error code valid for PUBACK/PUBREC). Acks may be given in any order; the
    /// session sends them in the order the messages arrived, as the spec requires.
    /// Fails with [`Error::Rejected`]`(`[`CommandError::UnknownAck`]`)` for an id that is not
    /// waiting for an ack.
    ///
    /// Acks bypass the publish queue, so they are never held up by back-pressure.
    /// Cancel safety: once handed over (first poll, unless the ack channel is full) the ack
    /// is applied even if the future is dropped.
    pub async fn ack(&self, id: InboundId, reason_code: ReasonCode) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(&self.control, Command::Ack(id, reason_code, tx))
            .await?;
        reply(rx, &self.shared).await
    }

    /// Sends an AUTH packet (MQTT 5 enhanced authentication).
    ///
    /// Cancel safety: as [`ack`](Self::ack).
    pub async fn auth(&self, auth: Auth) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.send(&self.control, Command::Auth(Box::new(auth), tx))
            .await?;
        reply(rx, &self.shared).await
    }

    /// Disconnects gracefully: after every command handed over before it (publishes in order),
    /// sends DISCONNECT with Normal disconnection (the server discards the will), writes
    /// everything out, closes the transport, and resolves.
    ///
    /// QoS 1 and 2 publishes still waiting for their acknowledgement then fail with
    /// [`Error::Closed`]. Cancel safety: once handed over, the disconnect happens even if the
    /// future is dropped.
    pub async fn disconnect(&self) -> Result<(), Error> {
        self.disconnect_with(Disconnect::new(ReasonCode::Success))
            .await
    }

    /// [`disconnect`](Self::disconnect) with a DISCONNECT of your own (MQTT 5 reason code,
    /// Session Expiry Interval, reason string; 0x04 asks the server to publish the will).
    pub async fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        // While the session waits for a reconnect, nothing handed over is going out any more,
        // and publishes may fill the ordered channel: the disconnect overtakes them.
        let channel = if self.shared.is_detached() {
            &self.control
        } else {
            &self.ops
        };
        self.send(channel, Command::Disconnect(Box::new(disconnect), tx))
            .await?;
        reply(rx, &self.shared).await
    }

    /// Whether the connection has ended: for good, or (with
    /// [`ClientOptions::resumable`]) until a [`Reconnect`] gets its CONNACK.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Why the connection ended, while it is closed.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.close_reason()
    }

    /// Whether the driver has ended: no operation can succeed any more and the session can no
    /// longer be resumed (after a close with `resumable: false`, or `disconnect`).
    pub fn is_ended(&self) -> bool {
        self.control.is_closed()
    }

    /// Hands a new transport to the driver; the reply comes with the CONNACK.
    async fn reconnect_boxed(
        &self,
        transport: BoxTransport,
        connect: Option<Connect>,
    ) -> Result<Box<ConnAck>, Error> {
        let (tx, rx) = oneshot::channel();
        let command = ReconnectCommand {
            transport,
            connect,
            reply: tx,
        };
        self.send(&self.control, Command::Reconnect(Box::new(command)))
            .await?;
        reply(rx, &self.shared).await
    }

    async fn send(&self, channel: &mpsc::Sender<Command>, command: Command) -> Result<(), Error> {
        channel
            .send(command)
            .await
            .map_err(|_| self.shared.closed_error())
    }
}

/// Session resumption: hands a client whose connection was lost (an [`Event::Closed`]
/// with `resumable: true`, see [`ClientOptions::resumable`]) a new transport.
///
/// One trait, implemented once for [`ClientOn`]`<R>` on every runtime: `reconnect` takes the
/// runtime's streams (tokio's `AsyncRead + AsyncWrite` for `mqtt_streaming_tokio::Client`,
/// futures-io streams for `mqtt_streaming_smol::Client`), `reconnect_tcp` its address types. Each
/// adapter re-exports it: `use mqtt_streaming_tokio::Reconnect;`.
///
/// The session sends its CONNECT again (the last one sent, with Clean Start 0) and waits for
/// the CONNACK. If the server kept the session (Session Present), unacknowledged PUBLISHes
/// are re-sent with DUP set and unacknowledged PUBRELs re-sent ([MQTT-4.4.0-1]), and their
/// futures resolve with the acknowledgements on the new connection. If it did not, they
/// fail with [`Error::Abandoned`] and [`AbandonCause::SessionLost`](mqtt_streaming_session::AbandonCause),
/// handing their messages back. Publishes made while disconnected (queued by the session,
/// bounded by [`ClientConfig::max_queued`]) go out after the CONNACK, in order.
///
/// Errors: [`Error::Rejected`]`(`[`CommandError::AlreadyConnected`]`)` while a connection is
/// open or being opened (the transport is dropped); [`Error::Closed`] once the driver has
/// ended ([`is_ended`](ClientOn::is_ended)); [`Error::ConnectionRefused`], [`Error::Io`],
/// [`Error::Closed`] or [`Error::ProtocolViolation`] when this connection fails before its
/// CONNACK (no `Closed` event is reported for it; the session waits for the next reconnect).
///
/// Cancel safety: the transport is handed over on the first poll (unless the control channel
/// is full). Dropped before that, the transport is dropped. Dropped afterwards, the
/// reconnect carries on: its CONNACK shows as [`Event::Connected`] and a failure leaves the
/// session waiting again ([`is_closed`](ClientOn::is_closed)). `reconnect_tcp` dropped while
/// the TCP connection is being made does nothing.
///
/// Reconnecting by hand, with a pause (a client made by [`connect_reconnecting_on`] and the
/// adapters' `connect_reconnecting` / `connect_tcp_reconnecting` does this by itself, with
/// backoff and re-subscription):
///
/// ```no_run
/// use std::time::Duration;
/// use mqtt_streaming_tokio::{connect_tcp, ClientOptions, Event, Reconnect};
/// use mqtt_streaming_proto::{Connect, MqttString, ProtocolVersion};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), mqtt_streaming_tokio::Error> {
/// let addr = "127.0.0.1:1883";
/// let mut connect = Connect::new(ProtocolVersion::V5, MqttString::new("sensor-1").unwrap());
/// connect.clean_start = false;
/// connect.properties.session_expiry_interval = Some(3600); // the server keeps the session
/// let (client, mut events) = connect_tcp(addr, ClientOptions::new(connect).resumable()).await?;
/// while let Some(event) = events.recv().await {
///     match event {
///         Event::Closed { resumable: true, .. } => loop {
///             tokio::time::sleep(Duration::from_secs(1)).await;
///             match client.reconnect_tcp(addr).await {
///                 Ok(connack) => break, // connack.session_present: the session resumed
///                 Err(error) if error.is_connection_error() && !client.is_ended() => {}
///                 Err(error) => return Err(error),
///             }
///         },
///         Event::Message { publish, .. } => println!("{publish:?}"),
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
pub trait Reconnect {
    /// The runtime whose transports the client takes.
    type Runtime: Runtime;

    /// Resumes the session over `transport` with the last CONNECT, Clean Start 0; resolves
    /// with the CONNACK.
    fn reconnect<Io>(
        &self,
        transport: Io,
    ) -> impl Future<Output = Result<Box<ConnAck>, Error>> + Send
    where
        Self::Runtime: Adapt<Io>;

    /// [`reconnect`](Self::reconnect) with a CONNECT of your own, sent as given (its Clean
    /// Start included) and used for later reconnects (with Clean Start 0).
    fn reconnect_with<Io>(
        &self,
        transport: Io,
        connect: Connect,
    ) -> impl Future<Output = Result<Box<ConnAck>, Error>> + Send
    where
        Self::Runtime: Adapt<Io>;

    /// Connects over TCP to `addr` with TCP_NODELAY set, then as
    /// [`reconnect`](Self::reconnect).
    fn reconnect_tcp<A>(&self, addr: A) -> impl Future<Output = Result<Box<ConnAck>, Error>> + Send
    where
        Self::Runtime: TcpConnect<A>;
}

impl<R: Runtime> Reconnect for ClientOn<R> {
    type Runtime = R;

    fn reconnect<Io>(
        &self,
        transport: Io,
    ) -> impl Future<Output = Result<Box<ConnAck>, Error>> + Send
    where
        R: Adapt<Io>,
    {
        self.reconnect_boxed(Box::new(R::adapt(transport)), None)
    }

    fn reconnect_with<Io>(
        &self,
        transport: Io,
        connect: Connect,
    ) -> impl Future<Output = Result<Box<ConnAck>, Error>> + Send
    where
        R: Adapt<Io>,
    {
        self.reconnect_boxed(Box::new(R::adapt(transport)), Some(connect))
    }

    fn reconnect_tcp<A>(&self, addr: A) -> impl Future<Output = Result<Box<ConnAck>, Error>> + Send
    where
        R: TcpConnect<A>,
    {
        let connecting = R::connect(addr);
        async move {
            let stream = connecting.await?;
            self.reconnect_boxed(Box::new(stream), None).await
        }
    }
}

#[derive(Debug)]
enum Token {
    Publish(PublishToken),
    /// The request is kept (reconnecting clients only) to remember what was granted.
    Subscribe(Reply<SubAck>, Option<Box<SubscribeRequest>>),
    Unsubscribe(Reply<UnsubAck>),
    /// A SUBSCRIBE the client made again by itself after the server lost the session.
    Resubscribe,
}

impl Token {
    fn fail(self, error: Error) {
        match self {
            Self::Publish(token) => token.fail(error),
            Self::Resubscribe => {}
            Self::Subscribe(reply, _) => {
                let _ = reply.send(Err(error));
            }
            Self::Unsubscribe(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

struct ClientRole {
    session: ClientSession<Token>,
    /// Waits for the CONNACK: `connect`'s or a reconnect's.
    connected: Option<Reply<Box<ConnAck>>>,
    disconnects: Vec<Reply<()>>,
    io_error: Option<io::Error>,
    shared: Arc<Shared>,
    /// The last CONNECT sent; a reconnect sends it again with Clean Start 0.
    connect: Connect,
    /// [`ClientOptions::resumable`].
    resumable: bool,
    /// [`ClientOptions::batch_acks`].
    batch_acks: bool,
    /// The application ended the session (`disconnect`, or every handle gone).
    ending: bool,
    /// The transport is closed and the driver waits for a new one.
    awaiting_transport: bool,
    /// A reconnect's transport, for the driver.
    transport: Option<BoxTransport>,
    /// `connected` belongs to a reconnect: a failure before CONNACK goes there only.
    reconnecting: bool,
    /// Reconnecting by itself ([`ReconnectPolicy`]).
    auto: Option<Box<Auto>>,
}

/// Where a reconnecting client's next attempt stands.
enum Attempt {
    /// Nothing under way (connected, or about to schedule the next attempt).
    Idle,
    /// The backoff's pause.
    Waiting(BoxFuture<()>),
    /// Opening the transport.
    Opening(BoxFuture<io::Result<BoxTransport>>),
    /// CONNECT handed to the session on a new transport; waiting for the CONNACK.
    Handshake,
}

/// What to do once the events of a drain are routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FollowUp {
    None,
    /// Let the held queue go.
    Release,
    /// Subscribe again, then release.
    Resubscribe,
}

/// The state of a client that reconnects by itself.
struct Auto {
    policy: ReconnectPolicy,
    connector: Connector,
    sleeper: Sleeper,
    jitter: Jitter,
    /// Attempts since the last CONNACK.
    attempt: u32,
    state: Attempt,
    /// State events for the stream, in order.
    events: VecDeque<Event>,
    /// What the server granted, by filter, with the SUBSCRIBE's properties (Subscription
    /// Identifier): what is subscribed again when the server lost the session.
    subscriptions: BTreeMap<TopicFilter, (Subscription, SubscribeProperties)>,
    follow: FollowUp,
    /// SUBSCRIBEs made again and not answered yet; while any is, the queue stays held.
    resubscribing: usize,
    /// A re-subscription was started and not finished (the connection was lost meanwhile):
    /// do it again on the next connection even if the server has a session.
    resubscribe_unfinished: bool,
    resubscribed_filters: usize,
    resubscribe_refused: usize,
}

/// Filters per SUBSCRIBE when subscribing again.
const RESUBSCRIBE_BATCH: usize = 32;

impl Auto {
    fn new(policy: ReconnectPolicy, connector: Connector, sleeper: Sleeper) -> Self {
        Self {
            policy,
            connector,
            sleeper,
            jitter: Jitter::new(),
            attempt: 0,
            state: Attempt::Idle,
            events: VecDeque::new(),
            subscriptions: BTreeMap::new(),
            follow: FollowUp::None,
            resubscribing: 0,
            resubscribe_unfinished: false,
            resubscribed_filters: 0,
            resubscribe_refused: 0,
        }
    }

    /// The SUBSCRIBEs that restore what was granted.
    fn resubscribe_requests(&self) -> Vec<SubscribeRequest> {
        let mut requests: Vec<SubscribeRequest> = Vec::new();
        for (subscription, properties) in self.subscriptions.values() {
            match requests.last_mut() {
                Some(last)
                    if last.properties == *properties
                        && last.subscriptions.len() < RESUBSCRIBE_BATCH =>
                {
                    last.subscriptions.push(subscription.clone());
                }
                _ => requests.push(SubscribeRequest {
                    subscriptions: vec![subscription.clone()],
                    properties: properties.clone(),
                }),
            }
        }
        requests
    }
}

impl ClientRole {
    /// Drives a reconnecting client's next attempt while there is no transport: the pause,
    /// then opening the transport, then CONNECT. Ready when something changed (an event to
    /// report, a transport to attach, or giving up).
    fn poll_attempt(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        let Some(auto) = self.auto.as_deref_mut() else {
            return Poll::Pending;
        };
        if !self.awaiting_transport || self.ending || !self.resumable {
            return Poll::Pending;
        }
        match &mut auto.state {
            Attempt::Idle | Attempt::Handshake => {
                if auto
                    .policy
                    .max_attempts
                    .is_some_and(|max| auto.attempt >= max)
                {
                    // Give up: the driver ends, failing what waits.
                    self.resumable = false;
                    return Poll::Ready(());
                }
                auto.attempt += 1;
                let delay = auto.policy.delay(auto.attempt, auto.jitter.next());
                auto.events.push_back(Event::Reconnecting {
                    attempt: auto.attempt,
                    delay,
                });
                auto.state = Attempt::Waiting((auto.sleeper)(delay));
                Poll::Ready(())
            }
            Attempt::Waiting(pause) => {
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                auto.events.push_back(Event::Connecting {
                    attempt: auto.attempt,
                });
                auto.state = Attempt::Opening((auto.connector)());
                Poll::Ready(())
            }
            Attempt::Opening(opening) => {
                let result = match opening.as_mut().poll(cx) {
                    Poll::Ready(result) => result,
                    Poll::Pending => return Poll::Pending,
                };
                match result {
                    Ok(transport) => {
                        let mut connect = self.connect.clone();
                        // Without a client identifier there is no session to resume (and a
                        // 3.1.1 server refuses Clean Session 0 with an empty one,
                        // [MQTT-3.1.3-8]): keep the first CONNECT's Clean Start.
                        if !connect.client_id.is_empty() {
                            connect.clean_start = false;
                        }
                        if auto.policy.resubscribe {
                            self.session.hold_queue();
                        }
                        match self.session.connect(now, connect) {
                            Ok(()) => {
                                auto.state = Attempt::Handshake;
                                self.awaiting_transport = false;
                                self.transport = Some(transport);
                                self.io_error = None;
                            }
                            Err(rejected) => {
                                // Cannot happen while detached; report and try again.
                                auto.events.push_back(Event::ConnectFailed {
                                    attempt: auto.attempt,
                                    error: Error::Rejected(rejected.error),
                                });
                                auto.state = Attempt::Idle;
                            }
                        }
                    }
                    Err(error) => {
                        auto.events.push_back(Event::ConnectFailed {
                            attempt: auto.attempt,
                            error: Error::Io(error),
                        });
                        auto.state = Attempt::Idle;
                    }
                }
                Poll::Ready(())
            }
        }
    }

    /// Subscribes again to what the client held (the server lost the session); the queue
    /// stays held until every SUBACK is in.
    fn resubscribe(&mut self, now: Instant) {
        let Some(auto) = self.auto.as_deref_mut() else {
            return;
        };
        auto.resubscribing = 0;
        auto.resubscribed_filters = 0;
        auto.resubscribe_refused = 0;
        auto.resubscribe_unfinished = true;
        for request in auto.resubscribe_requests() {
            let filters = request.subscriptions.len();
            auto.resubscribed_filters += filters;
            match self.session.subscribe(now, request, Token::Resubscribe) {
                Ok(()) => auto.resubscribing += 1,
                Err(_) => auto.resubscribe_refused += filters,
            }
        }
        if auto.resubscribing == 0 {
            Self::resubscribed(auto);
            self.session.release_queue(now);
        }
    }

    /// Every SUBACK of a re-subscription is in.
    fn resubscribed(auto: &mut Auto) {
        auto.resubscribe_unfinished = false;
        auto.events.push_back(Event::Resubscribed {
            filters: auto.resubscribed_filters,
            refused: auto.resubscribe_refused,
        });
    }

    fn reconnect(&mut self, now: Instant, command: ReconnectCommand) {
        let ReconnectCommand {
            transport,
            connect,
            reply,
        } = command;
        if !self.awaiting_transport {
            let _ = reply.send(Err(Error::Rejected(CommandError::AlreadyConnected)));
            return;
        }
        let connect = connect.unwrap_or_else(|| {
            let mut connect = self.connect.clone();
            connect.clean_start = false;
            connect
        });
        if let Some(auto) = self.auto.as_deref_mut() {
            // The application's reconnect replaces the attempt under way.
            auto.state = Attempt::Idle;
            if auto.policy.resubscribe {
                self.session.hold_queue();
            }
        }
        match self.session.connect(now, connect.clone()) {
            Ok(()) => {
                self.connect = connect;
                self.connect.clean_start = false;
                self.awaiting_transport = false;
                self.transport = Some(transport);
                self.connected = Some(reply);
                self.reconnecting = true;
                self.io_error = None;
            }
            Err(rejected) => {
                let _ = reply.send(Err(Error::Rejected(rejected.error)));
            }
        }
    }
}

impl Role for ClientRole {
    type Command = Command;
    type Event = Event;
    type Session = ClientSession<Token>;

    fn session(&mut self) -> &mut Self::Session {
        &mut self.session
    }

    fn session_ref(&self) -> &Self::Session {
        &self.session
    }

    fn wants_read(&self) -> bool {
        self.session.wants_read()
    }

    fn io_error(&mut self) -> &mut Option<io::Error> {
        &mut self.io_error
    }

    const TRACKS_IDLE: bool = true;

    // A client answers what it reads only with acknowledgements.
    const READS_WHILE_OUTPUT_WAITS: bool = true;

    fn is_idle(&self) -> bool {
        self.session.inflight_len() == 0 && self.session.queued_len() == 0
    }

    fn shrink_idle(&mut self) {
        self.session.shrink_idle();
    }

    fn acknowledgements_owed(&self) -> usize {
        if self.batch_acks {
            self.session.acknowledgements_owed()
        } else {
            0
        }
    }

    fn poll_event(&mut self) -> Option<Routed<Event>> {
        if let Some(event) = self.auto.as_deref_mut().and_then(|a| a.events.pop_front()) {
            return Some(Routed::Stream(event));
        }
        let routed = match self.session.poll_event()? {
            ClientEvent::Connected(connack) => {
                // Open before the reply: whoever it wakes sees the connection open.
                self.shared.set_open();
                self.reconnecting = false;
                if let Some(assigned) = &connack.properties.assigned_client_identifier {
                    // [MQTT-3.2.2-16] (5.0): the session is the server's name for us now; a
                    // reconnect resumes it under that name.
                    self.connect.client_id = assigned.clone();
                }
                if let Some(auto) = self.auto.as_deref_mut() {
                    auto.attempt = 0;
                    auto.state = Attempt::Idle;
                    let lost = !connack.session_present || auto.resubscribe_unfinished;
                    auto.follow =
                        if auto.policy.resubscribe && lost && !auto.subscriptions.is_empty() {
                            FollowUp::Resubscribe
                        } else {
                            FollowUp::Release
                        };
                }
                if let Some(tx) = self.connected.take() {
                    let _ = tx.send(Ok(connack.clone()));
                }
                Routed::Stream(Event::Connected(connack))
            }
            ClientEvent::Message { publish, ack } => {
                Routed::Stream(Event::Message { publish, ack })
            }
            ClientEvent::Auth(auth) => Routed::Stream(Event::Auth(auth)),
            ClientEvent::Published {
                token,
                reason_code,
                properties,
            } => match token {
                Token::Publish(token) => token.published(reason_code, properties).into(),
                other => {
                    other.fail(Error::Closed(None));
                    Routed::Handled
                }
            },
            ClientEvent::Subscribed { token, suback } => {
                match token {
                    Token::Subscribe(reply, request) => {
                        if let (Some(auto), Some(request)) = (self.auto.as_deref_mut(), request) {
                            let SubscribeRequest {
                                subscriptions,
                                properties,
                            } = *request;
                            for (subscription, code) in
                                subscriptions.into_iter().zip(&suback.reason_codes)
                            {
                                if !code.is_error() {
                                    auto.subscriptions.insert(
                                        subscription.filter.clone(),
                                        (subscription, properties.clone()),
                                    );
                                }
                            }
                        }
                        let _ = reply.send(Ok(suback));
                    }
                    Token::Resubscribe => {
                        if let Some(auto) = self.auto.as_deref_mut() {
                            auto.resubscribe_refused += suback
                                .reason_codes
                                .iter()
                                .filter(|code| code.is_error())
                                .count();
                            auto.resubscribing = auto.resubscribing.saturating_sub(1);
                            if auto.resubscribing == 0 {
                                Self::resubscribed(auto);
                                auto.follow = FollowUp::Release;
                            }
                        }
                    }
                    other => other.fail(Error::Closed(None)),
                }
                Routed::Handled
            }
            ClientEvent::Unsubscribed { token, unsuback } => {
                if let Token::Unsubscribe(reply) = token {
                    let _ = reply.send(Ok(unsuback));
                }
                Routed::Handled
            }
            ClientEvent::Abandoned {
                token,
                cause,
                message,
            } => {
                match token {
                    Token::Publish(token) => token.abandoned(cause, message),
                    other => other.fail(Error::Abandoned {
                        cause,
                        message: None,
                    }),
                }
                Routed::Handled
            }
            ClientEvent::Closed { initiator, reason } => {
                let info = CloseInfo::new(reason.clone(), self.io_error.as_ref());
                if let Some(tx) = self.connected.take() {
                    let _ = tx.send(Err(info.to_error()));
                    if std::mem::take(&mut self.reconnecting) {
                        self.io_error = None;
                        return Some(Routed::ClosedQuietly(info));
                    }
                }
                if let Some(auto) = self.auto.as_deref_mut() {
                    auto.resubscribing = 0;
                    auto.follow = FollowUp::None;
                    if matches!(auto.state, Attempt::Handshake) && !self.ending {
                        // An attempt that failed before its CONNACK: reported as such, and
                        // the next attempt follows.
                        auto.events.push_back(Event::ConnectFailed {
                            attempt: auto.attempt,
                            error: info.to_error(),
                        });
                        self.io_error = None;
                        return Some(Routed::ClosedQuietly(info));
                    }
                }
                let event = Event::Closed {
                    initiator,
                    reason,
                    io_error: self.io_error.take(),
                    resumable: self.resumable(),
                };
                Routed::Closed(event, info)
            }
            // An event this version of the adapter does not know (the enum is
            // non-exhaustive): nothing to route.
            _ => Routed::Handled,
        };
        Some(routed)
    }

    fn apply(&mut self, now: Instant, command: Command) -> Option<Command> {
        match command {
            Command::Publish(token) => {
                // A token always carries its message here; without one it is dropped (its
                // receipt then reports the close).
                let message = token.take_message()?;
                match self.session.publish(now, message, Token::Publish(token)) {
                    Ok(()) => None,
                    Err(Rejected {
                        error: CommandError::QueueFull,
                        command,
                        token: Token::Publish(token),
                    }) => {
                        token.put_message(command);
                        Some(Command::Publish(token))
                    }
                    Err(rejected) => {
                        rejected.token.fail(Error::Rejected(rejected.error));
                        None
                    }
                }
            }
            Command::Subscribe(request, reply) => {
                let kept = self
                    .auto
                    .as_ref()
                    .filter(|auto| auto.policy.resubscribe)
                    .map(|_| request.clone());
                match self
                    .session
                    .subscribe(now, *request, Token::Subscribe(reply, kept))
                {
                    Ok(()) => None,
                    Err(Rejected {
                        error: CommandError::QueueFull,
                        command,
                        token: Token::Subscribe(reply, _),
                    }) => Some(Command::Subscribe(Box::new(command), reply)),
                    Err(rejected) => {
                        rejected.token.fail(Error::Rejected(rejected.error));
                        None
                    }
                }
            }
            Command::Unsubscribe(request, reply) => {
                if let Some(auto) = self.auto.as_deref_mut() {
                    // Not subscribed again after a session loss, whatever the server answers.
                    for filter in &request.filters {
                        auto.subscriptions.remove(filter);
                    }
                }
                match self
                    .session
                    .unsubscribe(now, *request, Token::Unsubscribe(reply))
                {
                    Ok(()) => None,
                    Err(Rejected {
                        error: CommandError::QueueFull,
                        command,
                        token: Token::Unsubscribe(reply),
                    }) => Some(Command::Unsubscribe(Box::new(command), reply)),
                    Err(rejected) => {
                        rejected.token.fail(Error::Rejected(rejected.error));
                        None
                    }
                }
            }
            Command::Disconnect(disconnect, reply) if self.awaiting_transport => {
                // No connection to close: the driver ends, failing what waits with this reason.
                let reason = CloseReason::Disconnect(disconnect.reason_code);
                self.shared.set_closed(CloseInfo::new(reason, None));
                self.ending = true;
                self.disconnects.push(reply);
                None
            }
            Command::Disconnect(disconnect, reply) => {
                match self.session.disconnect(now, *disconnect) {
                    // Resolved once the transport is closed.
                    Ok(()) => {
                        self.ending = true;
                        self.disconnects.push(reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(Error::Rejected(error)));
                    }
                }
                None
            }
            Command::Ack(id, reason_code, reply) => {
                let result = self.session.ack(now, id, reason_code);
                let _ = reply.send(result.map_err(Error::Rejected));
                None
            }
            Command::Auth(auth, reply) => {
                let result = self.session.auth(now, *auth);
                let _ = reply.send(result.map_err(Error::Rejected));
                None
            }
            Command::Reconnect(command) => {
                self.reconnect(now, *command);
                None
            }
        }
    }

    fn shutdown(&mut self, now: Instant) {
        self.ending = true;
        let _ = self
            .session
            .disconnect(now, Disconnect::new(ReasonCode::Success));
    }

    fn finish(&mut self, flushed: bool) {
        for reply in self.disconnects.drain(..) {
            let result = if flushed {
                Ok(())
            } else {
                Err(Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the DISCONNECT could not be written before the linger time",
                )))
            };
            let _ = reply.send(result);
        }
        self.awaiting_transport = self.resumable();
    }

    fn resumable(&self) -> bool {
        self.resumable && !self.ending
    }

    fn take_transport(&mut self) -> Option<BoxTransport> {
        self.transport.take()
    }

    fn poll_link(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        self.poll_attempt(cx, now)
    }

    fn follow_up(&mut self, now: Instant) -> bool {
        let Some(auto) = self.auto.as_deref_mut() else {
            return false;
        };
        match std::mem::replace(&mut auto.follow, FollowUp::None) {
            FollowUp::None => false,
            FollowUp::Release => {
                if !self.session.is_queue_held() {
                    return false;
                }
                self.session.release_queue(now);
                true
            }
            FollowUp::Resubscribe => {
                self.resubscribe(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every slot of a command channel is a `Command` (tokio's channels allocate 32 slots at
    /// once, for as long as the client lives), and every publish moves one into and out of
    /// the channel: a publish's message travels in its token and the rare large requests are
    /// boxed, so that a command is a few words (it was 456 bytes, a `Connect` inline).
    #[test]
    fn commands_stay_small() {
        let command = std::mem::size_of::<Command>();
        let token = std::mem::size_of::<PublishToken>();
        println!("Command {command} bytes, PublishToken {token} bytes");
        assert!(command <= 32, "Command is {command} bytes");
        assert!(token <= 16, "PublishToken is {token} bytes");
    }
}
