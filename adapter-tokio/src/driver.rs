//! Layer 7: the drive loop, written once for both roles: a clock, a transport, a timer, two
//! command channels and one loop over a sans-IO session. No protocol logic lives here.
//!
//! One turn of the loop:
//! 1. drain the session: `poll_transmit_buf` into the write buffer (a `TransmitBuf`: packets
//!    copied together, and a client's large payloads as segments of their own, not copied,
//!    when the transport gathers vectored writes; else one contiguous buffer), then
//!    `poll_event` (tokens are completed, stream events go to the event channel);
//! 2. arm the timer at `poll_timeout`;
//! 3. take the first of: the shutdown signal, room in the event channel for a held-back event,
//!    the timer, a control command, an ordered command, or bytes from the transport, that is
//!    ready; feed it to the session. When none is ready, write what waits (one `poll_write`
//!    for everything the turns since the last write produced) and wait for one.
//!
//! So a wake-up's input and commands are all taken before the answer goes out in one write
//! (fewer syscalls per message for a busy connection), and nothing ever waits for more work
//! (a lone message is written as soon as the turn that took it finds nothing else ready).
//!
//! Writing happens concurrently with reading (both are polled from one task), so two drivers
//! facing each other over a small buffer never deadlock on each other's writes; and a client
//! reads on while its own output waits ([`Role::READS_WHILE_OUTPUT_WAITS`]), so it never waits
//! for a server that stops reading it until it can write to it.
//!
//! Everything is bounded: commands are taken only while less than [`WRITE_HIGH_WATER`] bytes wait
//! to be written and the session's queue has room; input is read only while the event channel
//! has room, the session consumes what is read, and less than [`OUTPUT_LIMIT`] bytes wait (a
//! client: or its answers since they came to wait stay within [`ANSWER_ALLOWANCE`]).
//!
//! A role may outlive its transport ([`Role::resumable`], the client's session resumption):
//! once the transport is closed the driver keeps running *detached* (no transport; commands
//! still reach the session, events still go out) until the role hands it a new transport
//! ([`Role::take_transport`]) or stops being resumable (every handle gone, `disconnect`).
//!
//! # Reading acknowledgements in batches
//!
//! A publisher with a deep window against a broker that answers each PUBLISH at once would
//! otherwise wake, read and write once per acknowledgement (about three system calls per
//! message). While the session is owed at least [`BATCH_FROM`] acknowledgements
//! ([`Role::acknowledgements_owed`], at least [`ACK_BYTES`] each), the driver raises the
//! transport's read low-water mark ([`Transport::set_read_low_water`]) to a quarter to a
//! half of them (at most [`BATCH_MAX`]), all of which are certain to come: a wake-up then
//! reads several,
//! and the publishes they release leave in one write. Nothing waits on a guess: the mark never
//! exceeds what is owed for bytes already written (it drops to 1 while a write is incomplete),
//! and if no input at all arrives for [`BATCH_PATIENCE`] with the mark raised (a peer that
//! stopped acknowledging, a PINGRESP or a lone delivery below the mark) it drops to 1 until
//! the next read, which lets whatever is buffered in at once.
//!
//! The session says whether it takes input ([`Role::wants_read`]): while it does not (a server
//! waiting for the application's answer to a CONNECT, a transmit buffer the peer does not
//! drain), nothing more is read from the transport, and what was read is handed to it again
//! once it does. The driver never decodes packets itself.
//!
//! Imports `runtime`, `transport`, `shared` and `publish` (all below it).

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mqtt_streaming_session::{Endpoint, Instant, TransmitBuf};
use tokio::sync::{mpsc, watch};

use crate::publish::{PublishToken, Published};
use crate::runtime::{Clock, Runtime, Timer};
use crate::shared::{CloseInfo, EventSender, Shared, TrySendError};
use crate::transport::{BoxTransport, Transport};

/// The most bytes reserved in the read buffer before a read (reads grow to it while they
/// fill the room they are given).
const READ_CHUNK: usize = 8 * 1024;
/// The fewest bytes reserved before a read.
const MIN_READ: usize = 1024;
/// Commands are taken from the handles only while fewer bytes than this wait to be written.
pub(crate) const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Input is read only while fewer bytes than this wait to be written (acks produced by input
/// stay bounded when the peer does not read), or, for a role that reads while its output
/// waits, within [`ANSWER_ALLOWANCE`].
const OUTPUT_LIMIT: usize = 4 * WRITE_HIGH_WATER;
/// Bytes of answers to input (acknowledgements) a role that reads while its output waits
/// ([`Role::READS_WHILE_OUTPUT_WAITS`]: a client) may add to [`OUTPUT_LIMIT`] bytes waiting to
/// be written, until they drop below it again. A server that stops reading a client while
/// its own write to that client is blocked waits for the client to read; a client that
/// stopped reading as well, until it could write, would wait for the server: each for the
/// other, for good. Counting answers, not input, lets a client read any amount of QoS 0
/// deliveries, which it answers with nothing, and bounds what a server that never reads can
/// make it keep.
const ANSWER_ALLOWANCE: usize = 256 * 1024;
/// How long a connection whose role tracks idleness ([`Role::TRACKS_IDLE`]) stays idle
/// before its buffers and its session's empty queues are given back: a publisher whose window
/// empties for a moment between acknowledgements and its next publishes keeps them.
const SHRINK_DELAY: Duration = Duration::from_millis(100);
/// The most segments one vectored write takes (a run of small packets and a large payload
/// after each header: two per large PUBLISH).
const MAX_SLICES: usize = 256;
/// Ordered commands applied in one turn before the session is drained (batching).
const COMMAND_BATCH: usize = 64;
/// Steps taken (reads, command batches, timers) before what they produced is written, when
/// more keep being ready ([`Driver::poll_step`]).
const GATHER_STEPS: u32 = 16;
/// Bytes waiting to be written above which they are written before another step is taken
/// (below [`WRITE_HIGH_WATER`], so that gathering never holds input or commands back).
const GATHER_BYTES: usize = WRITE_HIGH_WATER / 2;

/// The smallest acknowledgement (PUBACK, PUBREC or PUBCOMP) on the wire, in bytes.
const ACK_BYTES: usize = 4;
/// Acknowledgements owed from which reads wait for several of them.
const BATCH_FROM: usize = 16;
/// The most acknowledgements a read waits for.
const BATCH_MAX: usize = 16;
/// How long input may stop arriving while the read low-water mark is raised before it is
/// lowered (the runtime's timers have millisecond resolution).
const BATCH_PATIENCE: Duration = Duration::from_millis(1);

/// The read low-water mark for `owed` acknowledgements: 1 (every byte) below [`BATCH_FROM`],
/// else the bytes of a quarter of them, rounded down to a power of two (fewer changes) and at
/// most [`BATCH_MAX`].
///
/// The trade-off: while the window is the limit (a distant broker), the slots whose
/// acknowledgements wait for the rest of the batch stay unused, so a batch of `k` of a
/// window of `w` costs up to about `k / 2w` of the throughput (an eighth at a window of 64,
/// under 1% at the default 1,024, where [`BATCH_MAX`] is the bound). An eighth of the
/// window instead halved most of the gain in CPU at a window of 64 (BENCHMARKS.md).
fn read_low_water(owed: usize) -> usize {
    if owed < BATCH_FROM {
        return 1;
    }
    let acks = (owed / 4).clamp(1, BATCH_MAX);
    ACK_BYTES << acks.ilog2()
}

/// The mark to set for `owed` acknowledgements when `current` is set: `current` while it
/// asks for at most half of them and [`read_low_water`] is not higher, else
/// [`read_low_water`]. A publisher's owed acknowledgements swing by a batch or more around a
/// power of two (64 after a write, 48 or fewer after a read at a window of 64): at a third
/// the mark still changed twice per batch (2 `setsockopt` per write). Throughput does not
/// depend on it (the batch a window waits for is [`read_low_water`]'s, set as it refills);
/// only the last receipts of a draining window wait for up to half of what is left, or the
/// patience.
fn next_read_low_water(current: usize, owed: usize) -> usize {
    let ideal = read_low_water(owed);
    if current > 1 && ideal > 1 && ideal <= current && current <= owed * ACK_BYTES / 2 {
        current
    } else {
        ideal
    }
}

/// The driver's transport: the one it was spawned with, a later one, or none (detached).
enum Link<Io> {
    First(Io),
    Next(BoxTransport),
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no transport")
}

impl<Io: Transport> Transport for Link<Io> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        match self {
            Self::First(io) => io.poll_read(cx, buf),
            Self::Next(io) => io.poll_read(cx, buf),
            Self::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Self::First(io) => io.poll_write(cx, buf),
            Self::Next(io) => io.poll_write(cx, buf),
            Self::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::First(io) => io.poll_write_vectored(cx, bufs),
            Self::Next(io) => io.poll_write_vectored(cx, bufs),
            Self::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::First(io) => io.is_write_vectored(),
            Self::Next(io) => io.is_write_vectored(),
            Self::Gone => false,
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::First(io) => io.poll_flush(cx),
            Self::Next(io) => io.poll_flush(cx),
            Self::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::First(io) => io.poll_close(cx),
            Self::Next(io) => io.poll_close(cx),
            Self::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::First(io) => io.poll_read_ready(cx),
            Self::Next(io) => io.poll_read_ready(cx),
            Self::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn set_read_low_water(&mut self, bytes: usize) -> bool {
        match self {
            Self::First(io) => io.set_read_low_water(bytes),
            Self::Next(io) => io.set_read_low_water(bytes),
            Self::Gone => false,
        }
    }
}

fn shutdown_signal(mut rx: watch::Receiver<bool>) -> BoxFuture<()> {
    Box::pin(async move {
        loop {
            if *rx.borrow_and_update() {
                return;
            }
            if rx.changed().await.is_err() {
                // The listener was dropped without a shutdown: connections carry on.
                std::future::pending::<()>().await;
            }
        }
    })
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where a session event goes.
pub(crate) enum Routed<E> {
    /// A token was completed; nothing for the event stream.
    Handled,
    /// A QoS 0 publish: complete it once the bytes encoded so far are written.
    AfterWrite(PublishToken),
    /// For the application's event stream.
    Stream(E),
    /// The connection ended: delivered last, after the transport is closed.
    Closed(E, CloseInfo),
    /// The connection ended, reported to whoever waits for it rather than on the stream (a
    /// reconnect that failed before its CONNACK).
    ClosedQuietly(CloseInfo),
}

impl<E> From<Published> for Routed<E> {
    fn from(published: Published) -> Self {
        match published {
            Published::Done => Self::Handled,
            Published::AfterWrite(token) => Self::AfterWrite(token),
        }
    }
}

/// One role (client or server connection) over its sans-IO session.
pub(crate) trait Role: Send + 'static {
    /// What the handles send.
    type Command: Send + 'static;
    /// What the event stream carries.
    type Event: Send + 'static;

    /// The sans-IO session the role wraps: the driver feeds it bytes and time and drains its
    /// output through this (events go through [`poll_event`](Self::poll_event), which routes
    /// them).
    type Session: Endpoint;

    fn session(&mut self) -> &mut Self::Session;
    fn session_ref(&self) -> &Self::Session;
    /// Whether the session takes input now (its `wants_read`).
    fn wants_read(&self) -> bool;
    /// Where the role keeps the transport error that ended the connection, for its `Closed`.
    fn io_error(&mut self) -> &mut Option<io::Error>;

    /// The transport is gone (`error` when it failed rather than ended).
    fn handle_closed(&mut self, now: Instant, error: Option<io::Error>) {
        let slot = self.io_error();
        if slot.is_none() {
            *slot = error;
        }
        self.session().handle_closed(now);
    }
    fn poll_event(&mut self) -> Option<Routed<Self::Event>>;
    /// Applies a command. Gives it back when the session's bounded queue is full: the driver
    /// holds it and retries after the next input (back-pressure).
    fn apply(&mut self, now: Instant, command: Self::Command) -> Option<Self::Command>;
    /// Graceful shutdown requested (by the owner, or because every handle is gone).
    fn shutdown(&mut self, now: Instant);
    /// The transport is closed (`flushed`: everything was written first).
    fn finish(&mut self, flushed: bool);
    /// Whether the session outlives the transport: after `finish`, the driver stays and waits
    /// for [`take_transport`](Self::take_transport) as long as this holds.
    fn resumable(&self) -> bool {
        false
    }
    /// A new transport for the session, handed over by a command; checked after each one.
    fn take_transport(&mut self) -> Option<BoxTransport> {
        None
    }
    /// While detached: drives the role's own way to a new transport (a reconnecting client's
    /// backoff and connect). Ready when it made progress (an event to report, a transport for
    /// [`take_transport`](Self::take_transport), or the role stopped being resumable).
    fn poll_link(&mut self, _cx: &mut Context<'_>, _now: Instant) -> Poll<()> {
        Poll::Pending
    }
    /// Whether the role reports idleness ([`is_idle`](Self::is_idle)): the driver then keeps
    /// its buffers while the connection is busy and gives them back, with the session's
    /// ([`shrink_idle`](Self::shrink_idle)), once it has been idle for [`SHRINK_DELAY`].
    /// Without it, the driver gives its buffers back whenever a read waits or a write is done.
    const TRACKS_IDLE: bool = false;
    /// Whether the role answers input only with acknowledgements (a client): it then reads
    /// on while its output waits, within [`ANSWER_ALLOWANCE`].
    const READS_WHILE_OUTPUT_WAITS: bool = false;
    /// Nothing is under way (nothing in flight or queued).
    fn is_idle(&self) -> bool {
        true
    }
    /// The connection has been idle for a while: the session gives back the memory of its
    /// empty queues.
    fn shrink_idle(&mut self) {}
    /// Acknowledgements the peer owes for what was handed out, each at least [`ACK_BYTES`]
    /// long: reads wait for several of them (see the module's "Reading acknowledgements in
    /// batches"). 0 (the default) reads every byte at once.
    fn acknowledgements_owed(&self) -> usize {
        0
    }
    /// Called after each drain's events are routed: commands the role gives its session by
    /// itself in answer to them (a reconnecting client's re-subscription). Whether it did
    /// anything (the session is then drained again).
    fn follow_up(&mut self, _now: Instant) -> bool {
        false
    }
}

/// The driver's ends of the channels to its handles.
pub(crate) struct Channels<C, E> {
    /// Ordered commands (publish, subscribe, disconnect...): may be held back.
    pub(crate) ops: mpsc::Receiver<C>,
    /// Commands that never wait for the session's queue (acks, answers to the peer).
    pub(crate) control: mpsc::Receiver<C>,
    pub(crate) events: EventSender<E>,
    /// Graceful-shutdown signal of a listener's connection group.
    pub(crate) shutdown: Option<watch::Receiver<bool>>,
}

enum Step<C> {
    Read,
    Eof,
    Broken(io::Error),
    Timeout,
    Op(C),
    Control(C),
    Shutdown,
    Progress,
}

/// One connection's drive loop.
pub(crate) struct Driver<Rt: Runtime, Io, R: Role> {
    io: Link<Io>,
    role: R,
    clock: Clock,
    shared: Arc<Shared>,
    linger: Duration,
    read_buf: BytesMut,
    /// Bytes the next read reserves room for (between [`MIN_READ`] and [`READ_CHUNK`]).
    read_want: usize,
    /// Encoded bytes not yet written: runs of packets copied together, and large payloads as
    /// segments of their own (written with vectored I/O).
    out: TransmitBuf,
    flush_pending: bool,
    broken: bool,
    /// Bytes appended to `out` since the start, and bytes written: QoS 0 completions wait for
    /// `written` to pass the mark taken when they were encoded.
    appended: u64,
    written: u64,
    after_write: VecDeque<(u64, PublishToken)>,
    ops: Option<mpsc::Receiver<R::Command>>,
    control: Option<mpsc::Receiver<R::Command>>,
    stalled_op: Option<R::Command>,
    events: EventSender<R::Event>,
    /// Stream events waiting for room in the event channel, in order. Input is not read while
    /// any wait, so this holds at most what one read produced (plus `Closed`).
    pending_events: VecDeque<R::Event>,
    /// The session closed the connection: close the transport.
    closing: bool,
    /// The `Closed` event, delivered once the transport is closed.
    closed_event: Option<R::Event>,
    /// No transport: the session outlived it and waits for a new one.
    detached: bool,
    /// Resolves when the listener asks its connections to shut down (pending forever when the
    /// listener goes away without asking). Stored, so that its waker stays registered.
    shutdown: Option<BoxFuture<()>>,
    handles_gone: bool,
    timer: Rt::Timer,
    armed: Option<Instant>,
    /// The session took no more input (`wants_read` was false after `handle_read`): read no
    /// more until it wants input again, then hand it what `read_buf` kept.
    input_stalled: bool,
    read_first: bool,
    /// Steps taken since the last write ([`GATHER_STEPS`]).
    gathered: u32,
    /// When an idle connection gives its memory back ([`Role::TRACKS_IDLE`]).
    shrink_at: Option<Instant>,
    /// Given back during this idle period.
    shrunk: bool,
    /// The transport's read low-water mark as last set (1: every byte makes it readable).
    low_water: usize,
    /// The transport has no low-water mark.
    low_water_unsupported: bool,
    /// While the mark is raised: when to check that input still arrives.
    patience_at: Option<Instant>,
    /// Input was read since the last patience check (or since the mark was raised).
    read_since_check: bool,
    /// No input came for [`BATCH_PATIENCE`] with the mark raised: it stays at 1 until the
    /// next read.
    patience_spent: bool,
    /// The last write left bytes unwritten (acknowledgements for them are not owed yet).
    write_blocked: bool,
    /// Input was read since the last drain: what the drain appends answers it.
    answering: bool,
    /// Answers appended while [`OUTPUT_LIMIT`] bytes waited ([`ANSWER_ALLOWANCE`]).
    answers_while_output_waits: usize,
}

impl<Rt: Runtime, Io: Transport, R: Role> Driver<Rt, Io, R> {
    pub(crate) fn new(
        runtime: &Rt,
        io: Io,
        role: R,
        clock: Clock,
        shared: Arc<Shared>,
        channels: Channels<R::Command, R::Event>,
        linger: Duration,
    ) -> Self {
        Self {
            io: Link::First(io),
            role,
            clock,
            shared,
            linger,
            read_buf: BytesMut::new(),
            read_want: MIN_READ,
            out: TransmitBuf::new(),
            flush_pending: false,
            broken: false,
            appended: 0,
            written: 0,
            after_write: VecDeque::new(),
            ops: Some(channels.ops),
            control: Some(channels.control),
            stalled_op: None,
            events: channels.events,
            pending_events: VecDeque::new(),
            closing: false,
            closed_event: None,
            detached: false,
            shutdown: channels.shutdown.map(shutdown_signal),
            handles_gone: false,
            timer: runtime.timer(),
            armed: None,
            input_stalled: false,
            read_first: true,
            gathered: 0,
            shrink_at: None,
            shrunk: false,
            low_water: 1,
            low_water_unsupported: false,
            patience_at: None,
            read_since_check: false,
            patience_spent: false,
            write_blocked: false,
            answering: false,
            answers_while_output_waits: 0,
        }
    }

    /// Runs the connection (and, for a resumable role, the connections after it) to its end.
    ///
    /// Boxed: the task's future is then a pointer and the loop's state, not a second copy of
    /// the driver (an async fn's state keeps its by-value arguments beside what it moves
    /// out of them).
    pub(crate) async fn run(mut self: Box<Self>) {
        // One clock read per turn: the drain that follows a step happens at the step's time.
        let mut now = self.clock.now();
        loop {
            self.drain(now);
            if self.closing {
                // Boxed (like the end's): once per connection, and it would otherwise take room
                // in the future of every connection's task for its whole life.
                let flushed = Box::pin(self.close_transport()).await;
                now = self.clock.now();
                if self.role.resumable() && !self.handles_gone {
                    self.detach(flushed);
                    continue;
                }
                self.end(flushed).await;
                return;
            }
            if self.detached && (!self.role.resumable() || self.handles_gone) {
                break;
            }
            self.plan_shrink(now);
            self.plan_low_water(now);
            self.arm_timer();
            let step = poll_fn(|cx| self.poll_step(cx)).await;
            now = self.clock.now();
            match step {
                Step::Read => self.read(now),
                Step::Eof => self.role.handle_closed(now, None),
                Step::Broken(error) => {
                    self.broken = true;
                    self.role.handle_closed(now, Some(error));
                }
                Step::Timeout => {
                    // Timers never fire early; the max only guards the ms rounding.
                    let at = self.armed.take().unwrap_or(now);
                    self.shrink_if_idle(now.max(at));
                    self.check_patience(now.max(at));
                    // Harmless when the deadline was the shrink's.
                    self.role.session().handle_timeout(now.max(at));
                }
                Step::Op(command) => {
                    self.apply(now, command);
                    self.apply_batch(now);
                }
                Step::Control(command) => self.apply(now, command),
                Step::Shutdown => self.role.shutdown(now),
                Step::Progress => {}
            }
            if let Some(transport) = self.role.take_transport() {
                self.attach(transport);
            }
            if let Some(command) = self.stalled_op.take() {
                self.apply(now, command);
            }
            if self.input_stalled && self.output_allows_input() && self.role.wants_read() {
                self.read(now);
            }
        }
        // Detached, and nobody can or wants to hand over a transport any more.
        self.end(true).await;
    }

    /// The transport is closed and the session lives on: wait for a new transport. What the
    /// close reported goes out on the event stream as the loop runs.
    fn detach(&mut self, flushed: bool) {
        self.role.finish(flushed);
        self.closing = false;
        let late = self.late_events();
        self.pending_events.extend(late);
        self.pending_events.extend(self.closed_event.take());
        // QoS 0 publishes whose bytes never left: they were not sent.
        for (_, token) in self.after_write.drain(..) {
            token.fail(self.shared.closed_error());
        }
        self.io = Link::Gone;
        self.out.clear();
        self.appended = self.written;
        self.flush_pending = false;
        self.broken = false;
        self.read_buf.clear();
        self.input_stalled = false;
        self.armed = None;
        self.detached = true;
        self.shared.set_detached(true);
    }

    /// A new transport for the session (whose CONNECT already waits to be written).
    fn attach(&mut self, transport: BoxTransport) {
        self.io = Link::Next(transport);
        // A new socket starts with the default mark.
        self.low_water = 1;
        self.low_water_unsupported = false;
        self.patience_at = None;
        self.patience_spent = false;
        self.write_blocked = false;
        self.detached = false;
        self.shared.set_detached(false);
    }

    fn read(&mut self, now: Instant) {
        self.answering = true;
        self.read_since_check = true;
        self.patience_spent = false;
        self.role.session().handle_read(now, &mut self.read_buf);
        self.input_stalled = !self.role.wants_read();
    }

    fn apply(&mut self, now: Instant, command: R::Command) {
        if let Some(held) = self.role.apply(now, command) {
            self.stalled_op = Some(held);
        }
    }

    /// Takes more ordered commands that are already waiting, so that they leave in one write.
    fn apply_batch(&mut self, now: Instant) {
        for _ in 1..COMMAND_BATCH {
            if self.stalled_op.is_some() {
                return;
            }
            let Some(ops) = &mut self.ops else { return };
            match ops.try_recv() {
                Ok(command) => self.apply(now, command),
                Err(_) => return,
            }
        }
    }

    /// The drain rule: transmit, then events; again when the role answered the events with
    /// commands of its own.
    fn drain(&mut self, now: Instant) {
        loop {
            self.drain_once(now);
            if self.closing || !self.role.follow_up(now) {
                return;
            }
        }
    }

    fn drain_once(&mut self, now: Instant) {
        self.transmit(now);
        while let Some(routed) = self.role.poll_event() {
            match routed {
                Routed::Handled => {}
                Routed::AfterWrite(token) => self.after_write(token),
                Routed::Stream(event) => {
                    if self.pending_events.is_empty() {
                        match self.events.try_send(event) {
                            Ok(()) => {}
                            Err(TrySendError::Full(event)) => {
                                self.pending_events.push_back(event);
                            }
                            // Nobody listens any more.
                            Err(TrySendError::Closed(_)) => {}
                        }
                    } else {
                        self.pending_events.push_back(event);
                    }
                }
                Routed::Closed(event, info) => {
                    self.shared.set_closed(info);
                    self.closing = true;
                    self.closed_event = Some(event);
                }
                Routed::ClosedQuietly(info) => {
                    self.shared.set_closed(info);
                    self.closing = true;
                }
            }
        }
    }

    fn transmit(&mut self, now: Instant) {
        loop {
            // `out` is the driver's own (never a read buffer): when it is empty (written),
            // the session's buffer takes its place instead of being copied into it, and a
            // client's large payloads are moved, not copied.
            let n = if self.io.is_write_vectored() {
                self.role.session().poll_transmit_buf(now, &mut self.out)
            } else {
                // One contiguous run (a TLS record or WebSocket frame carries many packets).
                let tail = self.out.tail_mut();
                if tail.is_empty() {
                    self.role.session().poll_transmit_swap(now, tail)
                } else {
                    self.role.session().poll_transmit(now, tail)
                }
            };
            if n == 0 {
                break;
            }
            self.appended += n as u64;
            if self.answering && self.out.len() >= OUTPUT_LIMIT {
                // Counted whole, though publishes the answers released may be among them.
                self.answers_while_output_waits += n;
            }
        }
        self.answering = false;
    }

    fn after_write(&mut self, token: PublishToken) {
        if self.written >= self.appended {
            token.written();
        } else {
            self.after_write.push_back((self.appended, token));
        }
    }

    /// Gives back the read and write buffers when they hold nothing.
    fn free_buffers(&mut self) {
        if self.read_buf.is_empty() && self.read_buf.capacity() > 0 {
            self.read_buf = BytesMut::new();
        }
        if self.out.is_empty() {
            self.out.shrink_idle();
        }
    }

    /// For a role that tracks idleness: plans the shrink once the connection went idle (at
    /// most one per idle period, so an idle connection is not woken again and again).
    fn plan_shrink(&mut self, now: Instant) {
        if !R::TRACKS_IDLE {
            return;
        }
        if !self.role.is_idle() {
            self.shrunk = false;
        } else if !self.shrunk && self.shrink_at.is_none() {
            self.shrink_at = Some(now + SHRINK_DELAY);
        }
    }

    /// The shrink's time came: shrink if the connection is still idle.
    fn shrink_if_idle(&mut self, now: Instant) {
        if self.shrink_at.is_some_and(|at| now >= at) {
            self.shrink_at = None;
            if self.role.is_idle() {
                self.role.shrink_idle();
                self.free_buffers();
                self.shrunk = true;
            }
        }
    }

    /// Sets the transport's read low-water mark for the acknowledgements owed (see the
    /// module's "Reading acknowledgements in batches"), and plans the patience check while it
    /// is raised.
    fn plan_low_water(&mut self, now: Instant) {
        if self.low_water_unsupported || self.detached {
            self.patience_at = None;
            return;
        }
        let want = if self.write_blocked || self.patience_spent {
            1
        } else {
            next_read_low_water(self.low_water, self.role.acknowledgements_owed())
        };
        if want != self.low_water {
            if self.io.set_read_low_water(want) {
                self.low_water = want;
            } else {
                self.low_water_unsupported = true;
                self.low_water = 1;
            }
        }
        if self.low_water == 1 {
            self.patience_at = None;
        } else if self.patience_at.is_none() {
            self.patience_at = Some(now + BATCH_PATIENCE);
            self.read_since_check = false;
        }
    }

    /// The patience check's time came: if nothing was read since the last one, the mark
    /// goes down until the next read ([`plan_low_water`](Self::plan_low_water) lowers it).
    fn check_patience(&mut self, now: Instant) {
        let Some(at) = self.patience_at else { return };
        if now < at {
            return;
        }
        if self.read_since_check {
            self.patience_at = Some(now + BATCH_PATIENCE);
            self.read_since_check = false;
        } else {
            self.patience_spent = true;
            self.patience_at = None;
        }
    }

    fn arm_timer(&mut self) {
        let mut next = match (self.role.session_ref().poll_timeout(), self.shrink_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(patience) = self.patience_at {
            next = Some(next.map_or(patience, |at| at.min(patience)));
        }
        if next == self.armed {
            return;
        }
        self.armed = next;
        if let Some(at) = next {
            self.timer.reset(self.clock.deadline(at));
        }
    }

    /// Waits for the next step. What a wake-up brought is taken before anything is written
    /// (input, commands, timers: every step that is already ready), so that one write carries
    /// the answers to all of it; the write happens as soon as nothing more is ready, so no
    /// step waits for more work. Bounded: after [`GATHER_STEPS`] steps, or once
    /// [`GATHER_BYTES`] wait, the write comes first.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Step<R::Command>> {
        if self.gathered >= GATHER_STEPS || self.out.len() >= GATHER_BYTES {
            self.gathered = 0;
            if let Err(error) = self.poll_write(cx) {
                return Poll::Ready(Step::Broken(error));
            }
        }
        if let Poll::Ready(step) = self.poll_ready_step(cx) {
            self.gathered += 1;
            return Poll::Ready(step);
        }
        // Nothing more is ready: write what the steps produced. (`out` is below
        // `GATHER_BYTES`, so the checks above did not hold input or commands back for it.)
        self.gathered = 0;
        if let Err(error) = self.poll_write(cx) {
            return Poll::Ready(Step::Broken(error));
        }
        Poll::Pending
    }

    /// The first step that is ready, if any (every source that is not ready has the task's
    /// waker registered).
    fn poll_ready_step(&mut self, cx: &mut Context<'_>) -> Poll<Step<R::Command>> {
        if self.input_stalled && self.output_allows_input() && self.role.wants_read() {
            // The session takes input again (its transmit buffer was drained): hand it what
            // was kept.
            return Poll::Ready(Step::Progress);
        }
        if self.poll_shutdown_signal(cx) {
            return Poll::Ready(Step::Shutdown);
        }
        if !self.pending_events.is_empty() {
            if let Poll::Ready(open) = self.events.poll_room(cx) {
                if open {
                    while let Some(event) = self.pending_events.pop_front() {
                        match self.events.try_send(event) {
                            Ok(()) => {}
                            Err(TrySendError::Full(event)) => {
                                self.pending_events.push_front(event);
                                break;
                            }
                            Err(TrySendError::Closed(_)) => {
                                self.pending_events.clear();
                                break;
                            }
                        }
                    }
                } else {
                    // Nobody listens any more.
                    self.pending_events.clear();
                }
                return Poll::Ready(Step::Progress);
            }
        }
        if self.armed.is_some() && self.timer.poll_expired(cx).is_ready() {
            return Poll::Ready(Step::Timeout);
        }
        if let Some(control) = &mut self.control {
            match control.poll_recv(cx) {
                Poll::Ready(Some(command)) => return Poll::Ready(Step::Control(command)),
                Poll::Ready(None) => self.control = None,
                Poll::Pending => {}
            }
        }
        if self.detached && self.role.poll_link(cx, self.clock.now()).is_ready() {
            return Poll::Ready(Step::Progress);
        }
        // Alternate which of input and commands goes first, so neither starves the other.
        self.read_first = !self.read_first;
        for input in [self.read_first, !self.read_first] {
            let step = if input {
                self.poll_input(cx)
            } else {
                self.poll_op(cx)
            };
            if let Poll::Ready(step) = step {
                return Poll::Ready(step);
            }
        }
        // Detached, a held-back command keeps the ordered channel from being polled: the control
        // channel (on every handle too) tells alone.
        let ops_gone = self.ops.is_none() || self.detached;
        if ops_gone && self.control.is_none() && !self.handles_gone {
            // Every handle is gone: nobody can ever talk to this connection again.
            self.handles_gone = true;
            return Poll::Ready(Step::Shutdown);
        }
        Poll::Pending
    }

    /// Whether the listener asked its connections to shut down.
    fn poll_shutdown_signal(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(signal) = &mut self.shutdown else {
            return false;
        };
        if signal.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.shutdown = None;
        true
    }

    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<Step<R::Command>> {
        if self.detached
            || self.input_stalled
            || !self.pending_events.is_empty()
            || !self.output_allows_input()
        {
            return Poll::Pending;
        }
        match self.io.poll_read_ready(cx) {
            Poll::Pending => {
                // Idle: hold no read or write buffer while waiting (unless the read buffer
                // keeps a partial packet).
                if !R::TRACKS_IDLE {
                    self.free_buffers();
                }
                return Poll::Pending;
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Step::Broken(error)),
            Poll::Ready(Ok(())) => {}
        }
        if self.read_buf.capacity() - self.read_buf.len() < self.read_want {
            self.read_buf.reserve(self.read_want);
        }
        match self.io.poll_read(cx, &mut self.read_buf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Step::Eof),
            Poll::Ready(Ok(n)) => {
                // Grow while reads fill the room, shrink when they use little of it.
                self.read_want = if self.read_buf.len() == self.read_buf.capacity() {
                    (self.read_want * 2).min(READ_CHUNK)
                } else if n < self.read_want / 4 {
                    (self.read_want / 2).max(MIN_READ)
                } else {
                    self.read_want
                };
                Poll::Ready(Step::Read)
            }
            Poll::Ready(Err(error)) => Poll::Ready(Step::Broken(error)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether what waits to be written lets input be read: less than [`OUTPUT_LIMIT`], or
    /// answers within [`ANSWER_ALLOWANCE`] for a role that reads while its output waits.
    fn output_allows_input(&mut self) -> bool {
        if self.out.len() < OUTPUT_LIMIT {
            self.answers_while_output_waits = 0;
            return true;
        }
        R::READS_WHILE_OUTPUT_WAITS && self.answers_while_output_waits < ANSWER_ALLOWANCE
    }

    fn poll_op(&mut self, cx: &mut Context<'_>) -> Poll<Step<R::Command>> {
        if self.stalled_op.is_some() || self.out.len() >= WRITE_HIGH_WATER {
            return Poll::Pending;
        }
        let Some(ops) = &mut self.ops else {
            return Poll::Pending;
        };
        match ops.poll_recv(cx) {
            Poll::Ready(Some(command)) => Poll::Ready(Step::Op(command)),
            Poll::Ready(None) => {
                self.ops = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes what waits, then flushes; never blocks the loop. Completes QoS 0 publishes
    /// whose bytes are out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.broken {
            return Ok(());
        }
        while !self.out.is_empty() {
            let result = if self.out.segment_count() > 1 {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, chunk) in slices.iter_mut().zip(self.out.chunks()) {
                    *slot = IoSlice::new(chunk);
                    count += 1;
                }
                self.io.poll_write_vectored(cx, &slices[..count])
            } else {
                self.io.poll_write(cx, self.out.chunk())
            };
            match result {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.out.advance(n);
                    self.written += n as u64;
                    self.flush_pending = true;
                }
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => break,
            }
        }
        self.write_blocked = !self.out.is_empty();
        if !R::TRACKS_IDLE && self.out.is_empty() {
            // Written: an idle connection keeps no transmit buffer (the next drain allocates
            // what it needs, once per turn).
            self.out.shrink_idle();
        }
        while let Some((mark, _)) = self.after_write.front() {
            if *mark > self.written {
                break;
            }
            if let Some((_, token)) = self.after_write.pop_front() {
                token.written();
            }
        }
        if self.out.is_empty() && self.flush_pending {
            match self.io.poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush_pending = false,
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    /// The connection is over: write what the session still has (the DISCONNECT that explains
    /// the close) and close the transport within the linger time. Whether all was written.
    async fn close_transport(&mut self) -> bool {
        let now = self.clock.now();
        self.transmit(now);
        if self.broken {
            return false;
        }
        // The linger time, on the runtime's timer (the loop's deadline is no longer needed).
        self.timer.reset(self.clock.after(self.linger));
        poll_fn(|cx| {
            let done = match self.poll_write(cx) {
                Err(_) => Poll::Ready(false),
                Ok(()) if !self.out.is_empty() || self.flush_pending => Poll::Pending,
                Ok(()) => self.io.poll_close(cx).map(|r| r.is_ok()),
            };
            match done {
                Poll::Ready(done) => Poll::Ready(done),
                Poll::Pending => self.timer.poll_expired(cx).map(|()| false),
            }
        })
        .await
    }

    /// Everything the session still reports after a close: completions are made, stream
    /// events returned in order.
    fn late_events(&mut self) -> Vec<R::Event> {
        let mut late = Vec::new();
        while let Some(routed) = self.role.poll_event() {
            match routed {
                Routed::Handled | Routed::Closed(..) | Routed::ClosedQuietly(_) => {}
                Routed::AfterWrite(token) => {
                    if self.written >= self.appended {
                        token.written();
                    }
                }
                Routed::Stream(event) => late.push(event),
            }
        }
        late
    }

    /// The driver is done: report, then go (the future delivers the last events).
    fn end(mut self: Box<Self>, flushed: bool) -> BoxFuture<()> {
        self.role.finish(flushed);
        let late = self.late_events();
        let events = self.events.clone();
        let pending = std::mem::take(&mut self.pending_events);
        let closing = self.closed_event.take();
        // Dropping the session fails every operation still waiting (their futures report the
        // close recorded in `shared`).
        drop(self);
        Box::pin(async move {
            for event in pending.into_iter().chain(late).chain(closing) {
                if events.send(event).await.is_err() {
                    break;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_low_water_mark_is_a_quarter_of_the_acknowledgements_owed() {
        // (owed, mark in bytes): every byte below 16 owed; then 4 bytes times the largest
        // power of two not above a quarter of them, capped at 16 acknowledgements.
        let table = [
            (0, 1),
            (15, 1),
            (16, 16),
            (31, 16),
            (32, 32),
            (63, 32),
            (64, 64),
            (65_535, 64),
        ];
        for (owed, mark) in table {
            assert_eq!(read_low_water(owed), mark, "{owed} owed");
            // Never more bytes than the acknowledgements owed certainly bring.
            assert!(mark <= owed.max(1) * ACK_BYTES);
        }
    }

    #[test]
    fn the_mark_stays_while_it_asks_for_at_most_half_of_what_is_owed() {
        // (current, owed, next)
        let table = [
            // A publisher's window swinging between 32 and 64 owed keeps 64 bytes.
            (64, 40, 64),
            (64, 64, 64),
            (64, 32, 64),
            // Above half of what is owed: down to the ideal.
            (64, 31, 16),
            (32, 15, 1),
            // Raised when the ideal is higher.
            (32, 64, 64),
            (1, 64, 64),
            // Below the batching threshold: every byte.
            (64, 15, 1),
            (16, 15, 1),
        ];
        for (current, owed, next) in table {
            assert_eq!(
                next_read_low_water(current, owed),
                next,
                "{current} set, {owed} owed"
            );
        }
    }
}
