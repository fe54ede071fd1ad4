//! Layer 8 (with `client` and `broker`): the server flow (Alpakka's "implement your own
//! server"): [`ServerOn`] (`Server` in each adapter) accepts connections from a listener,
//! [`serve_connection_on`] serves any transport; each connection is a [`ServerConnection`]:
//! its events, and a handle to answer them. Imports the layers below: `runtime`, `transport`,
//! `net`, `error`, `shared`, `publish`, `driver`.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mqtt_streaming_proto::{
    AckProperties, Auth, ConnAckProperties, Connect, Disconnect, MqttString, PacketId, Publish,
    ReasonCode, Subscribe, Unsubscribe, Will,
};
use mqtt_streaming_session::{
    CloseReason, CommandError, InboundId, Initiator, Instant, Message, Rejected, ServerConfig,
    ServerEvent, ServerSession, ServerState, SessionExpiry, SessionState,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::{Channels, Driver, Role, Routed};
use crate::error::{Error, TryPublishError};
use crate::net::{Adapt, Bind, Listener, NetRuntime};
use crate::publish::{reply, PublishOutcome, PublishReceipt, PublishToken};
use crate::runtime::{Clock, Runtime};
use crate::shared::{event_channel, CloseInfo, Events, Shared};
use crate::transport::Transport;

/// Options of a server flow: the session's limits plus the driver's channel sizes.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The limits of every connection's `ServerSession` (announced in CONNACK, enforced on
    /// input), its ack mode and the CONNECT timeout.
    pub config: ServerConfig,
    /// Capacity of each command channel from the handle to the driver (at least 1).
    pub command_capacity: usize,
    /// Capacity of the event channel (at least 1); while it is full the driver stops reading.
    pub event_capacity: usize,
    /// How long a closing connection may take to write its last bytes and close the transport.
    pub linger: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self::from(ServerConfig::default())
    }
}

impl From<ServerConfig> for ServerOptions {
    fn from(config: ServerConfig) -> Self {
        Self {
            config,
            command_capacity: 64,
            event_capacity: 256,
            linger: Duration::from_secs(5),
        }
    }
}

/// What a server connection reports. Answer `Connect`, `Subscribe` and `Unsubscribe` with the
/// handle's methods; outcomes of your own publishes resolve their futures instead.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The client asks to connect: answer with [`ConnectionHandle::accept`] or
    /// [`ConnectionHandle::reject`]. Nothing else is read from the client until you answer.
    Connect(Box<Connect>),
    /// An AUTH packet (MQTT 5 enhanced authentication).
    Auth(Auth),
    /// An application message from the client. With `ack: Some` (manual-ack mode), answer with
    /// [`ConnectionHandle::ack`].
    Message {
        /// The PUBLISH (topic resolved when it used an alias).
        publish: Publish,
        /// The id to acknowledge it with (manual mode, QoS 1 and 2).
        ack: Option<InboundId>,
    },
    /// The client subscribes: answer with [`ConnectionHandle::suback`], one code per filter.
    Subscribe(Subscribe),
    /// The client unsubscribes: answer with [`ConnectionHandle::unsuback`].
    Unsubscribe(Unsubscribe),
    /// The connection ended; always the last event, sent after the transport was closed (and,
    /// for an accepted connection, the session was detached: see
    /// [`ConnectionHandle::detach_session`]).
    Closed {
        /// Who ended it.
        initiator: Initiator,
        /// Why.
        reason: CloseReason,
        /// The client's will, when the connection ended without a normal DISCONNECT: publish
        /// it (after its Will Delay Interval unless the session resumes first).
        will: Option<Will>,
        /// The transport error, when the transport failed.
        io_error: Option<io::Error>,
    },
}

/// The receiving end of a server connection's events ([`Events`]). `recv` gives `None` after
/// `Closed` has been received.
///
/// Read it: while it is full, the driver stops reading from the transport.
pub type ConnectionEvents = Events<ConnectionEvent>;

/// The durable state of a client's session, taken from a closed connection with
/// [`ConnectionHandle::detach_session`] and given to the same client's next connection with
/// [`ConnectionHandle::accept`]: unacknowledged QoS 1 and 2 publishes (re-sent on resume),
/// queued messages, inbound QoS 2 state and the packet identifiers in use.
///
/// A `publish` future of the old connection still waiting for its acknowledgement stays
/// pending while the session is kept, resolves if a later connection completes the flow, and
/// fails with [`Error::Closed`] when the session is dropped.
#[derive(Debug)]
pub struct DetachedSession {
    state: SessionState<PublishToken>,
    /// The clock of the runtime the session came from.
    clock: Clock,
    client_id: MqttString,
    expiry: SessionExpiry,
}

impl DetachedSession {
    /// The client identifier of the connection it came from.
    pub fn client_id(&self) -> &MqttString {
        &self.client_id
    }

    /// How long the client asked the server to keep the session after the connection.
    pub fn expiry(&self) -> SessionExpiry {
        self.expiry
    }

    /// QoS 1 and 2 publishes the client has not finished acknowledging.
    pub fn inflight_len(&self) -> usize {
        self.state.inflight_len()
    }

    /// Messages waiting to be sent.
    pub fn queued_len(&self) -> usize {
        self.state.queued_len()
    }

    /// Queues a message for the client while it is away (sent in order when the session
    /// resumes); hands it back when the session's queue is full.
    pub fn enqueue(&mut self, message: Message) -> Result<(), Message> {
        let token = PublishToken::unobserved(message.qos);
        self.state
            .enqueue(self.clock.now(), message, token)
            .map_err(|rejected| rejected.command)
    }

    /// Ends the session: every message it still held, in-flight ones first.
    pub fn into_messages(self) -> Vec<Message> {
        self.state
            .into_abandoned()
            .into_iter()
            .map(|(_, message)| message)
            .collect()
    }
}

type Reply = oneshot::Sender<Result<(), Error>>;

/// Puts a session that a refused `accept` did not take back where `detach_session` finds it.
fn give_back(slot: &Mutex<Option<DetachedSession>>, session: Option<DetachedSession>) {
    if let (Some(session), Ok(mut slot)) = (session, slot.lock()) {
        *slot = Some(session);
    }
}

#[derive(Debug)]
pub(crate) enum Command {
    // Boxed: once per connection, and much larger than the other commands.
    Accept(Box<(ConnAckProperties, Option<DetachedSession>)>, Reply),
    Reject(ReasonCode, Box<ConnAckProperties>, Reply),
    SubAck(PacketId, Vec<ReasonCode>, AckProperties, Reply),
    UnsubAck(PacketId, Vec<ReasonCode>, AckProperties, Reply),
    Ack(InboundId, ReasonCode, Reply),
    Auth(Auth, Reply),
    Publish(Message, PublishToken),
    Disconnect(Disconnect, Reply),
}

/// A cloneable handle to one server connection: answer its events, publish to its client,
/// disconnect it. Cancel safety is as for `Client`: once a command is handed
/// to the driver (first poll, unless its channel is full), dropping the future only discards
/// the outcome.
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    ops: mpsc::Sender<Command>,
    control: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    detached: Arc<Mutex<Option<DetachedSession>>>,
}

impl ConnectionHandle {
    /// Accepts the connection (CONNACK Success). Limits left unset in `properties` are filled
    /// from the [`ServerConfig`]. `session` resumes a session detached from an earlier
    /// connection of the same client (Session Present, re-sends); with Clean Start it is
    /// discarded instead.
    ///
    /// A refused `accept` (the connection closed meanwhile, or `properties` the session cannot
    /// stand behind) loses nothing: the `session` given is put back, to be taken again with
    /// [`detach_session`](Self::detach_session).
    pub async fn accept(
        &self,
        properties: ConnAckProperties,
        session: Option<DetachedSession>,
    ) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        if let Err(unsent) = self
            .control
            .send(Command::Accept(Box::new((properties, session)), tx))
            .await
        {
            if let Command::Accept(accept, _) = unsent.0 {
                give_back(&self.detached, accept.1);
            }
            return Err(self.shared.closed_error());
        }
        reply(rx, &self.shared).await
    }

    /// Refuses the connection with a CONNACK error code, then closes it.
    pub async fn reject(&self, reason_code: ReasonCode) -> Result<(), Error> {
        self.reject_with(reason_code, ConnAckProperties::default())
            .await
    }

    /// [`reject`](Self::reject) with MQTT 5 CONNACK properties (reason string, server
    /// reference...).
    pub async fn reject_with(
        &self,
        reason_code: ReasonCode,
        properties: ConnAckProperties,
    ) -> Result<(), Error> {
        self.control(|tx| Command::Reject(reason_code, Box::new(properties), tx))
            .await
    }

    /// Answers a SUBSCRIBE: one code per filter, in order (the granted QoS via
    /// [`ReasonCode::granted`], or an error code).
    pub async fn suback(
        &self,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) -> Result<(), Error> {
        self.control(|tx| Command::SubAck(packet_id, reason_codes, properties, tx))
            .await
    }

    /// Answers an UNSUBSCRIBE (codes are sent to MQTT 5 clients only).
    pub async fn unsuback(
        &self,
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
        properties: AckProperties,
    ) -> Result<(), Error> {
        self.control(|tx| Command::UnsubAck(packet_id, reason_codes, properties, tx))
            .await
    }

    /// Acknowledges a message received in manual-ack mode (sent in arrival order).
    pub async fn ack(&self, id: InboundId, reason_code: ReasonCode) -> Result<(), Error> {
        self.control(|tx| Command::Ack(id, reason_code, tx)).await
    }

    /// Sends an AUTH packet (MQTT 5 enhanced authentication).
    pub async fn auth(&self, auth: Auth) -> Result<(), Error> {
        self.control(|tx| Command::Auth(auth, tx)).await
    }

    /// Publishes `message` to the client and waits for its acknowledgement, as
    /// `Client::publish` (with the same back-pressure and cancel
    /// safety). Before the connection is accepted, the message is queued.
    pub async fn publish(&self, message: Message) -> Result<PublishOutcome, Error> {
        self.begin_publish(message).await?.await
    }

    /// Hands `message` to the driver and returns a receipt for its acknowledgement, as
    /// `Client::begin_publish`.
    pub async fn begin_publish(&self, message: Message) -> Result<PublishReceipt, Error> {
        let (token, receipt) = PublishToken::pair(message.qos, self.shared.clone());
        self.ops
            .send(Command::Publish(message, token))
            .await
            .map_err(|_| self.shared.closed_error())?;
        Ok(receipt)
    }

    /// Hands `message` to the driver without waiting, as
    /// `Client::try_publish`.
    pub fn try_publish(&self, message: Message) -> Result<PublishReceipt, TryPublishError> {
        let (token, receipt) = PublishToken::pair(message.qos, self.shared.clone());
        match self.ops.try_send(Command::Publish(message, token)) {
            Ok(()) => Ok(receipt),
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

    /// Closes the connection from the server side, after the publishes handed over before it:
    /// MQTT 5 clients get a DISCONNECT with `reason_code` (for example 0x8E Session taken
    /// over, 0x98 Administrative action); MQTT 3.1.x clients see the transport close.
    /// Resolves once the transport is closed.
    pub async fn disconnect(&self, reason_code: ReasonCode) -> Result<(), Error> {
        self.disconnect_with(Disconnect::new(reason_code)).await
    }

    /// [`disconnect`](Self::disconnect) with a DISCONNECT of your own (reason string, server
    /// reference).
    pub async fn disconnect_with(&self, disconnect: Disconnect) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Command::Disconnect(disconnect, tx))
            .await
            .map_err(|_| self.shared.closed_error())?;
        reply(rx, &self.shared).await
    }

    /// Takes the session's durable state once the connection has closed (it is there when
    /// the `Closed` event is delivered), to resume it on the client's next connection.
    /// `None` before the close, after an earlier call, or when the connection was never
    /// accepted; or the session given to a refused [`accept`](Self::accept).
    pub fn detach_session(&self) -> Option<DetachedSession> {
        self.detached.lock().ok()?.take()
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.close_reason()
    }

    async fn control(&self, command: impl FnOnce(Reply) -> Command) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(command(tx))
            .await
            .map_err(|_| self.shared.closed_error())?;
        reply(rx, &self.shared).await
    }
}

/// One accepted connection: its events ([`events`](Self::events)) and its handle (the methods
/// of [`ConnectionHandle`], reachable directly through `Deref`).
///
/// Dropping it (and every clone of its handle) closes the connection gracefully.
#[derive(Debug)]
pub struct ServerConnection {
    handle: ConnectionHandle,
    events: ConnectionEvents,
    peer_addr: Option<SocketAddr>,
}

impl ServerConnection {
    /// The connection's events.
    pub fn events(&mut self) -> &mut ConnectionEvents {
        &mut self.events
    }

    /// The connection's handle (clone it to publish from other tasks).
    pub fn handle(&self) -> &ConnectionHandle {
        &self.handle
    }

    /// The client's address, for TCP connections.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The handle and the events, separately.
    pub fn into_parts(self) -> (ConnectionHandle, ConnectionEvents) {
        (self.handle, self.events)
    }
}

impl Deref for ServerConnection {
    type Target = ConnectionHandle;

    fn deref(&self) -> &ConnectionHandle {
        &self.handle
    }
}

/// Serves one MQTT connection over `transport` (any of the runtime's streams, see [`Adapt`]):
/// spawns its driver on `runtime` over a fresh `ServerSession` and returns the connection's
/// events and handle. The client must send CONNECT within the configured timeout. Each
/// adapter's `serve_connection` is this on its runtime.
pub fn serve_connection_on<R: Adapt<Io>, Io>(
    runtime: R,
    transport: Io,
    options: impl Into<ServerOptions>,
) -> ServerConnection {
    spawn_connection(&runtime, R::adapt(transport), &options.into(), None, None)
}

/// What a connection of a [`ServerGroup`] holds: the shutdown signal, and a sender whose drop
/// tells the group this connection is done.
type GroupMember = (watch::Receiver<bool>, mpsc::Sender<()>);

fn spawn_connection<Rt: Runtime, Io: Transport>(
    runtime: &Rt,
    transport: Io,
    options: &ServerOptions,
    group: Option<GroupMember>,
    peer_addr: Option<SocketAddr>,
) -> ServerConnection {
    let clock = Clock::of::<Rt>();
    let session = ServerSession::new(options.config.clone(), clock.now());
    let (ops_tx, ops_rx) = mpsc::channel(options.command_capacity.max(1));
    let (control_tx, control_rx) = mpsc::channel(options.command_capacity.max(1));
    let (events_tx, events) = event_channel(options.event_capacity);
    let shared = Arc::new(Shared::default());
    let detached = Arc::new(Mutex::new(None));
    let (shutdown, live) = group.unzip();
    let role = ServerRole {
        session,
        clock,
        detached: detached.clone(),
        disconnects: Vec::new(),
        io_error: None,
        _live: live,
    };
    let channels = Channels {
        ops: ops_rx,
        control: control_rx,
        events: events_tx,
        shutdown,
    };
    let driver = Driver::new(
        runtime,
        transport,
        role,
        clock,
        shared.clone(),
        channels,
        options.linger,
    );
    runtime.spawn(Box::new(driver).run());
    ServerConnection {
        handle: ConnectionHandle {
            ops: ops_tx,
            control: control_tx,
            shared,
            detached,
        },
        events,
        peer_addr,
    }
}

/// The connections of one server on a runtime, for graceful shutdown: what a [`ServerOn`] is
/// made of besides its listener.
struct ServerGroup<R> {
    runtime: R,
    options: ServerOptions,
    signal: watch::Sender<bool>,
    /// Held by every connection's driver; `done` ends when the last one finishes.
    live: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
}

impl<R: Runtime> ServerGroup<R> {
    fn new(runtime: R, options: ServerOptions) -> Self {
        let (signal, _) = watch::channel(false);
        let (live, done) = mpsc::channel(1);
        Self {
            runtime,
            options,
            signal,
            live,
            done,
        }
    }

    fn serve(&self, transport: impl Transport, peer_addr: Option<SocketAddr>) -> ServerConnection {
        spawn_connection(
            &self.runtime,
            transport,
            &self.options,
            Some((self.signal.subscribe(), self.live.clone())),
            peer_addr,
        )
    }

    async fn shutdown(self) {
        let Self {
            signal,
            live,
            mut done,
            ..
        } = self;
        signal.send_replace(true);
        drop(live);
        // Only closes when the last driver drops its sender.
        let _ = done.recv().await;
    }
}

/// A listener that serves MQTT connections on the runtime `R` (`Server` in each adapter:
/// `mqtt_streaming_tokio::Server` is `ServerOn<TokioRuntime>`): each accepted connection gets a
/// driver and is handed to the application as a [`ServerConnection`].
pub struct ServerOn<R: Runtime> {
    /// `accept` takes `&self`: concurrent accepts take turns (an async lock, so that each
    /// waiting task is woken in turn).
    listener: tokio::sync::Mutex<Box<dyn Listener>>,
    /// The listener's address, read once.
    local_addr: Option<SocketAddr>,
    group: ServerGroup<R>,
}

impl<R: Runtime> fmt::Debug for ServerOn<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("options", &self.group.options)
            .field("shutting_down", &*self.group.signal.borrow())
            .finish_non_exhaustive()
    }
}

impl<R: NetRuntime> ServerOn<R> {
    /// Listens on `addr` (the runtime's own address types; port 0 for an ephemeral port, see
    /// [`local_addr`](Self::local_addr)).
    pub async fn bind<A>(addr: A, options: impl Into<ServerOptions>) -> io::Result<Self>
    where
        R: Bind<A>,
    {
        let listener = R::bind(addr).await?;
        Ok(Self::from_listener(listener, options))
    }

    /// Serves connections from the runtime's TCP listener, bound elsewhere.
    pub fn from_listener(listener: R::TcpListener, options: impl Into<ServerOptions>) -> Self {
        Self::with_listener(R::default(), R::listener(listener), options)
    }
}

impl<R: Runtime> ServerOn<R> {
    /// Serves connections from any [`Listener`] (Unix sockets, TLS acceptors...), their drivers
    /// running on `runtime`.
    pub fn with_listener(
        runtime: R,
        listener: Box<dyn Listener>,
        options: impl Into<ServerOptions>,
    ) -> Self {
        Self {
            local_addr: listener.local_addr().ok(),
            listener: tokio::sync::Mutex::new(listener),
            group: ServerGroup::new(runtime, options.into()),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.local_addr
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the listener has no address"))
    }

    /// Waits for the next connection (TCP_NODELAY set on TCP streams) and starts its driver.
    ///
    /// Cancel safe: a connection is never lost when the future is dropped (the runtimes'
    /// listeners accept only once one is ready). Several tasks may accept at once: they take
    /// turns.
    pub async fn accept(&self) -> io::Result<ServerConnection> {
        let mut listener = self.listener.lock().await;
        let accepted = poll_fn(|cx| listener.poll_accept(cx)).await?;
        drop(listener);
        let (transport, peer) = accepted.into_transport();
        Ok(self.group.serve(transport, peer))
    }

    /// Serves a connection that arrived some other way (TLS, WebSocket...) as part of this
    /// server, so that [`shutdown`](Self::shutdown) includes it.
    pub fn serve<Io>(&self, transport: Io) -> ServerConnection
    where
        R: Adapt<Io>,
    {
        self.group.serve(R::adapt(transport), None)
    }

    /// Shuts down gracefully: stops listening, closes every connection of this server (MQTT 5
    /// clients get DISCONNECT 0x8B Server shutting down; a CONNECT still waiting for an answer
    /// gets CONNACK 0x88 Server unavailable), writes out what is pending, and waits until
    /// every connection's transport is closed (each within its linger time).
    ///
    /// Cancel safety: dropping the future after its first poll leaves the connections
    /// closing in the background.
    pub async fn shutdown(self) {
        let Self {
            listener, group, ..
        } = self;
        drop(listener);
        group.shutdown().await;
    }
}

struct ServerRole {
    session: ServerSession<PublishToken>,
    clock: Clock,
    detached: Arc<Mutex<Option<DetachedSession>>>,
    disconnects: Vec<Reply>,
    io_error: Option<io::Error>,
    /// Keeps the listener's shutdown waiting until this connection is done.
    _live: Option<mpsc::Sender<()>>,
}

impl Role for ServerRole {
    type Command = Command;
    type Event = ConnectionEvent;
    type Session = ServerSession<PublishToken>;

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

    fn poll_event(&mut self) -> Option<Routed<ConnectionEvent>> {
        let routed = match self.session.poll_event()? {
            ServerEvent::Connect(connect) => Routed::Stream(ConnectionEvent::Connect(connect)),
            ServerEvent::Auth(auth) => Routed::Stream(ConnectionEvent::Auth(auth)),
            ServerEvent::Message { publish, ack } => {
                Routed::Stream(ConnectionEvent::Message { publish, ack })
            }
            ServerEvent::Subscribe(subscribe) => {
                Routed::Stream(ConnectionEvent::Subscribe(subscribe))
            }
            ServerEvent::Unsubscribe(unsubscribe) => {
                Routed::Stream(ConnectionEvent::Unsubscribe(unsubscribe))
            }
            ServerEvent::Published {
                token,
                reason_code,
                properties,
            } => token.published(reason_code, properties).into(),
            ServerEvent::Abandoned {
                token,
                cause,
                message,
            } => {
                token.abandoned(cause, message);
                Routed::Handled
            }
            ServerEvent::Closed {
                initiator,
                reason,
                will,
            } => {
                let info = CloseInfo::new(reason.clone(), self.io_error.as_ref());
                let event = ConnectionEvent::Closed {
                    initiator,
                    reason,
                    will,
                    io_error: self.io_error.take(),
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
        let session = &mut self.session;
        let (result, reply) = match command {
            Command::Publish(message, token) => {
                return match session.publish(now, message, token) {
                    Ok(()) => None,
                    Err(Rejected {
                        error: CommandError::QueueFull,
                        command,
                        token,
                    }) => Some(Command::Publish(command, token)),
                    Err(rejected) => {
                        rejected.token.fail(Error::Rejected(rejected.error));
                        None
                    }
                };
            }
            Command::Disconnect(disconnect, reply) => {
                match session.disconnect(now, disconnect) {
                    // Resolved once the transport is closed.
                    Ok(()) => self.disconnects.push(reply),
                    Err(error) => {
                        let _ = reply.send(Err(Error::Rejected(error)));
                    }
                }
                return None;
            }
            Command::Accept(accept, reply) => {
                let (properties, resume) = *accept;
                let (state, origin) = match resume {
                    Some(d) => (Some(d.state), Some((d.clock, d.client_id, d.expiry))),
                    None => (None, None),
                };
                let result = session.accept(now, properties, state).map_err(|rejected| {
                    // The stored session is handed back, not dropped with the refusal.
                    if let (Some(state), Some((clock, client_id, expiry))) =
                        (rejected.session, origin)
                    {
                        let session = DetachedSession {
                            state,
                            clock,
                            client_id,
                            expiry,
                        };
                        give_back(&self.detached, Some(session));
                    }
                    rejected.error
                });
                (result, reply)
            }
            Command::Reject(code, properties, reply) => {
                (session.reject(now, code, *properties), reply)
            }
            Command::SubAck(id, codes, properties, reply) => {
                (session.suback(now, id, codes, properties), reply)
            }
            Command::UnsubAck(id, codes, properties, reply) => {
                (session.unsuback(now, id, codes, properties), reply)
            }
            Command::Ack(id, code, reply) => (session.ack(now, id, code), reply),
            Command::Auth(auth, reply) => (session.auth(now, auth), reply),
        };
        let _ = reply.send(result.map_err(Error::Rejected));
        None
    }

    fn shutdown(&mut self, now: Instant) {
        let _ = if self.session.state() == ServerState::Deciding {
            self.session.reject(
                now,
                ReasonCode::ServerUnavailable,
                ConnAckProperties::default(),
            )
        } else {
            self.session
                .disconnect(now, Disconnect::new(ReasonCode::ServerShuttingDown))
        };
    }

    fn finish(&mut self, flushed: bool) {
        if let Some(state) = self.session.detach() {
            let session = DetachedSession {
                state,
                clock: self.clock,
                client_id: self.session.client_id().clone(),
                expiry: self.session.session_expiry(),
            };
            if let Ok(mut slot) = self.detached.lock() {
                *slot = Some(session);
            }
        }
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
    }
}
