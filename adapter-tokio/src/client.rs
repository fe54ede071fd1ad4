//! Layer 8 (with `server` and `broker`): the client: [`connect_on`] / [`connect_tcp_on`], the
//! cloneable [`ClientOn`] handle, the [`ClientEvents`] stream, and session resumption on a new
//! transport ([`Reconnect`]). Imports the layers below: `runtime`, `transport`, `net`,
//! `error`, `shared`, `publish`, `driver`.

use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use mqtt_streaming_proto::{
    Auth, ConnAck, Connect, Disconnect, Publish, ReasonCode, SubAck, UnsubAck,
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
use crate::runtime::{Clock, Runtime};
use crate::shared::{CloseInfo, Events, Shared};
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
}

/// The receiving end of a client's events ([`Events`]). `recv` gives `None` once the driver
/// has ended: after a `Closed` event with `resumable: false`, or after the last handle went or
/// `disconnect` was called while the session waited for a reconnect.
///
/// Read it: while it is full, the driver stops reading from the transport.
pub type ClientEvents = Events<Event>;

type Reply<T> = oneshot::Sender<Result<T, Error>>;

#[derive(Debug)]
pub(crate) enum Command {
    Publish(Message, PublishToken),
    Subscribe(SubscribeRequest, Reply<SubAck>),
    Unsubscribe(UnsubscribeRequest, Reply<UnsubAck>),
    Disconnect(Disconnect, Reply<()>),
    Ack(InboundId, ReasonCode, Reply<()>),
    Auth(Auth, Reply<()>),
    Reconnect(ReconnectCommand),
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
    connect_transport(runtime, R::adapt(transport), options).await
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
    connect_transport(runtime, stream, options).await
}

/// Connects over `transport`, already the engine's [`Transport`] (what a runtime's `Dial`
/// gives: TLS, WebSocket, Unix...), then as [`connect_on`].
pub async fn connect_transport_on<R: Runtime>(
    runtime: R,
    transport: impl Transport,
    options: ClientOptions,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    connect_transport(runtime, transport, options).await
}

async fn connect_transport<R: Runtime, Io: Transport>(
    runtime: R,
    transport: Io,
    options: ClientOptions,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    let clock = Clock::of::<R>();
    let mut session = ClientSession::new(options.session.clone());
    session
        .connect(clock.now(), options.connect.clone())
        .map_err(|rejected| Error::Rejected(rejected.error))?;
    let (ops_tx, ops_rx) = mpsc::channel(options.command_capacity.max(1));
    let (control_tx, control_rx) = mpsc::channel(options.command_capacity.max(1));
    let (events_tx, events_rx) = mpsc::channel(options.event_capacity.max(1));
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
        ending: false,
        awaiting_transport: false,
        transport: None,
        reconnecting: false,
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
    runtime.spawn(driver.run());
    let client = ClientOn {
        ops: ops_tx,
        control: control_tx,
        shared,
        runtime: PhantomData,
    };
    reply(connected_rx, &client.shared).await?;
    Ok((client, Events::new(events_rx)))
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
    /// Allocates one oneshot channel per call, for the outcome.
    pub async fn publish(&self, message: Message) -> Result<PublishOutcome, Error> {
        self.begin_publish(message).await?.await
    }

    /// Hands `message` to the driver, waiting for room in the command queue, and returns a
    /// receipt that resolves like [`publish`](Self::publish). Lets one task pipeline many
    /// publishes and await their acknowledgements later.
    ///
    /// Cancel safety: as `publish`; when this future completes, the message was handed over.
    pub async fn begin_publish(&self, message: Message) -> Result<PublishReceipt, Error> {
        let (tx, rx) = oneshot::channel();
        let qos = message.qos;
        self.ops
            .send(Command::Publish(message, PublishToken::new(Some(tx), qos)))
            .await
            .map_err(|_| self.shared.closed_error())?;
        Ok(PublishReceipt::new(rx, self.shared.clone()))
    }

    /// Hands `message` to the driver without waiting: when the command queue is full (the
    /// session's bounded queue is full and the driver holds further commands back), the
    /// message comes back with [`Error::Rejected`]`(`[`CommandError::QueueFull`]`)`.
    pub fn try_publish(&self, message: Message) -> Result<PublishReceipt, TryPublishError> {
        let (tx, rx) = oneshot::channel();
        let qos = message.qos;
        let command = Command::Publish(message, PublishToken::new(Some(tx), qos));
        match self.ops.try_send(command) {
            Ok(()) => Ok(PublishReceipt::new(rx, self.shared.clone())),
            Err(error) => {
                let (error, command) = match error {
                    mpsc::error::TrySendError::Full(c) => {
                        (Error::Rejected(CommandError::QueueFull), c)
                    }
                    mpsc::error::TrySendError::Closed(c) => (self.shared.closed_error(), c),
                };
                let Command::Publish(message, _) = command else {
                    unreachable!("the command sent was a publish")
                };
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
        self.send(&self.ops, Command::Subscribe(request, tx))
            .await?;
        reply(rx, &self.shared).await
    }

    /// Unsubscribes and waits for the UNSUBACK (reason codes in MQTT 5 only).
    ///
    /// Cancel safety: as [`subscribe`](Self::subscribe).
    pub async fn unsubscribe(&self, request: UnsubscribeRequest) -> Result<UnsubAck, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(&self.ops, Command::Unsubscribe(request, tx))
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
        self.send(&self.control, Command::Auth(auth, tx)).await?;
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
        self.send(channel, Command::Disconnect(disconnect, tx))
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
        self.send(&self.control, Command::Reconnect(command))
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
/// Reconnecting with a pause (automatic backoff is the application's for now):
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
    Subscribe(Reply<SubAck>),
    Unsubscribe(Reply<UnsubAck>),
}

impl Token {
    fn fail(self, error: Error) {
        match self {
            Self::Publish(token) => token.fail(error),
            Self::Subscribe(reply) => {
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
    /// The application ended the session (`disconnect`, or every handle gone).
    ending: bool,
    /// The transport is closed and the driver waits for a new one.
    awaiting_transport: bool,
    /// A reconnect's transport, for the driver.
    transport: Option<BoxTransport>,
    /// `connected` belongs to a reconnect: a failure before CONNACK goes there only.
    reconnecting: bool,
}

impl ClientRole {
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

    fn poll_event(&mut self) -> Option<Routed<Event>> {
        let routed = match self.session.poll_event()? {
            ClientEvent::Connected(connack) => {
                // Open before the reply: whoever it wakes sees the connection open.
                self.shared.set_open();
                self.reconnecting = false;
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
                if let Token::Subscribe(reply) = token {
                    let _ = reply.send(Ok(suback));
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
                let event = Event::Closed {
                    initiator,
                    reason,
                    io_error: self.io_error.take(),
                    resumable: self.resumable(),
                };
                Routed::Closed(event, info)
            }
        };
        Some(routed)
    }

    fn apply(&mut self, now: Instant, command: Command) -> Option<Command> {
        match command {
            Command::Publish(message, token) => {
                match self.session.publish(now, message, Token::Publish(token)) {
                    Ok(()) => None,
                    Err(Rejected {
                        error: CommandError::QueueFull,
                        command,
                        token: Token::Publish(token),
                    }) => Some(Command::Publish(command, token)),
                    Err(rejected) => {
                        rejected.token.fail(Error::Rejected(rejected.error));
                        None
                    }
                }
            }
            Command::Subscribe(request, reply) => {
                match self
                    .session
                    .subscribe(now, request, Token::Subscribe(reply))
                {
                    Ok(()) => None,
                    Err(Rejected {
                        error: CommandError::QueueFull,
                        command,
                        token: Token::Subscribe(reply),
                    }) => Some(Command::Subscribe(command, reply)),
                    Err(rejected) => {
                        rejected.token.fail(Error::Rejected(rejected.error));
                        None
                    }
                }
            }
            Command::Unsubscribe(request, reply) => {
                match self
                    .session
                    .unsubscribe(now, request, Token::Unsubscribe(reply))
                {
                    Ok(()) => None,
                    Err(Rejected {
                        error: CommandError::QueueFull,
                        command,
                        token: Token::Unsubscribe(reply),
                    }) => Some(Command::Unsubscribe(command, reply)),
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
                match self.session.disconnect(now, disconnect) {
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
                let result = self.session.auth(now, auth);
                let _ = reply.send(result.map_err(Error::Rejected));
                None
            }
            Command::Reconnect(command) => {
                self.reconnect(now, command);
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
}
