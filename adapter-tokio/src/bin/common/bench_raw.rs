//! `mqtt-bench --client raw`: a light load generator without an MQTT client library, so that
//! the broker matrix measures the brokers rather than the clients driving them.
//!
//! Each publisher and each subscriber is one plain TCP connection (tokio) driven by one task:
//! it writes pre-encoded packets (a PUBLISH template per publisher, copied and patched with
//! its packet identifier and the payload's stamp; 4-byte acknowledgements) and parses what
//! comes back with a minimal decode: the 4-byte PUBACK/PUBREC/PUBREL/PUBCOMP form by hand,
//! everything else (a PUBLISH, borrowed, and the rare other packets) with mqtt-proto's
//! borrowed decoder [`Decoder::decode_slice`]. The codec is only a codec (bytes to packets,
//! with the checks of the specification), not a session: nothing of our client or of our
//! broker's session logic is on this path, so it favours no broker.
//!
//! The same workload as the other clients ([`crate::bench_clients`]): the same stamped
//! payloads, the same pacing, at most `window` QoS 1/2 messages written and not yet
//! acknowledged (PUBACK, or PUBCOMP at QoS 2) and at QoS 0 at most `window` messages not yet
//! written; subscribers answer PUBACK, PUBREC and PUBREL (with PUBCOMP) and feed the same
//! [`Tracker`](crate::bench_stats::Tracker). What the window allows is written in one
//! system call: the acknowledgements one read brings free slots, the publishes that fill them
//! go out together, and a subscriber's acknowledgements for one read go out together.
//!
//! Keep alive: every connection sends PINGREQ when it has written nothing for half the keep
//! alive interval, so long runs are not cut by the broker. MQTT 3.1.1 and 5.0 (an MQTT 5
//! server's Receive Maximum lowers the window).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{
    Connect, Decoder, MqttString, Packet, PacketId, PacketRef, ProtocolVersion, PubResponse,
    Publish, QoS, QosPid, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, MissedTickBehavior};

use crate::bench_clients::{more, Control, Plan, PubResult};
use crate::bench_stats;

/// How long connecting (TCP, CONNECT to CONNACK, SUBSCRIBE to SUBACK) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a publisher waits for its last acknowledgements after the publish phase.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a clean disconnect may take.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Initial size of a connection's read buffer; it grows up to the largest packet allowed.
const READ_BUFFER: usize = 64 * 1024;

/// PINGREQ (3.1.1 and 5.0 alike).
const PINGREQ: [u8; 2] = [0xC0, 0x00];
/// DISCONNECT, normal disconnection (3.1.1; in 5.0 the short form of reason code 0).
const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// First bytes of the acknowledgements (type and flags; PUBREL's flags are 0010, MQTT-3.6.1-1).
const PUBACK: u8 = 0x40;
const PUBREC: u8 = 0x50;
const PUBREL: u8 = 0x62;
const PUBCOMP: u8 = 0x70;

/// A publisher's packet identifier slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Not in use.
    Free,
    /// PUBLISH written, PUBACK (QoS 1) or PUBREC (QoS 2) awaited.
    Published,
    /// PUBREL written, PUBCOMP awaited.
    Released,
}

/// The connection's MQTT state, without I/O: the bytes to write, the publisher's window
/// (packet identifiers in flight) and the subscriber's QoS 2 receipts awaiting PUBREL.
pub(crate) struct RawSession {
    decoder: Decoder,
    /// Bytes to write; `out[out_pos..]` are not written yet.
    out: Vec<u8>,
    out_pos: usize,
    /// The publisher's PUBLISH, encoded once: a copy per message, patched.
    template: Vec<u8>,
    /// Where the packet identifier sits in the template (QoS 1 and 2).
    pid_at: Option<usize>,
    /// Where the payload (and its stamp) starts in the template.
    payload_at: usize,
    /// Publisher: the state of every packet identifier (empty until a template is set).
    slots: Vec<Slot>,
    /// Publisher: identifiers not free.
    in_flight: usize,
    /// Publisher: the next identifier to try.
    next_pid: u16,
    /// Subscriber: a bit per packet identifier of a QoS 2 PUBLISH answered with PUBREC and
    /// not yet released (empty until one arrives).
    awaiting_pubrel: Vec<u64>,
    /// Publisher: messages acknowledged (PUBACK; PUBCOMP at QoS 2).
    pub(crate) acked: u64,
    /// Publisher: messages refused by the server (MQTT 5 reason codes of 0x80 and above).
    pub(crate) refused: u64,
    /// The first refusal, for the report.
    pub(crate) first_refusal: Option<String>,
}

impl RawSession {
    /// A session for one connection speaking `version`, accepting packets of at most
    /// `max_packet_size` bytes.
    pub(crate) fn new(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Self {
            decoder: Decoder::new(version).with_max_packet_size(max_packet_size),
            out: Vec::with_capacity(4096),
            out_pos: 0,
            template: Vec::new(),
            pid_at: None,
            payload_at: 0,
            slots: Vec::new(),
            in_flight: 0,
            next_pid: 1,
            awaiting_pubrel: Vec::new(),
            acked: 0,
            refused: 0,
            first_refusal: None,
        }
    }

    /// Encodes the PUBLISH every message of this publisher copies: `topic`, `qos`, a payload of
    /// `size` bytes (at least the stamp).
    pub(crate) fn set_template(&mut self, topic: &str, qos: u8, size: usize) -> Result<(), String> {
        let topic = TopicName::new(topic).map_err(|e| format!("topic {topic}: {e}"))?;
        let pid = PacketId::new(1).expect("1 is not 0");
        let qos_pid = match qos {
            0 => QosPid::AtMostOnce,
            1 => QosPid::AtLeastOnce(pid),
            _ => QosPid::ExactlyOnce(pid),
        };
        let size = size.max(bench_stats::STAMP_LEN);
        let publish = Publish::new(topic, qos_pid, Bytes::from(vec![0u8; size]));
        let mut buf = BytesMut::new();
        Packet::Publish(publish)
            .encode(self.decoder.version(), &mut buf)
            .map_err(|e| format!("PUBLISH: {e}"))?;
        self.template = buf.to_vec();
        self.payload_at = self.template.len() - size;
        // The identifier is the last field before the payload, or before the (empty) property
        // block in MQTT 5.
        let props = usize::from(self.decoder.version().is_v5());
        self.pid_at = (qos > 0).then(|| self.payload_at - props - 2);
        if qos > 0 && self.slots.is_empty() {
            self.slots = vec![Slot::Free; 1 << 16];
        }
        Ok(())
    }

    /// Publisher: packet identifiers in use (QoS 1 and 2).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues the next PUBLISH, its payload stamped for message `seq` of `publisher`, sent
    /// `sent_ns` after the run's base instant. QoS 1 and 2: the caller keeps
    /// [`RawSession::in_flight`] below 65,535.
    pub(crate) fn queue_publish(&mut self, run: u32, publisher: u32, seq: u64, sent_ns: u64) {
        let start = self.out.len();
        self.out.extend_from_slice(&self.template);
        if let Some(at) = self.pid_at {
            let pid = self.allocate_pid();
            self.out[start + at..start + at + 2].copy_from_slice(&pid.to_be_bytes());
        }
        let stamp = start + self.payload_at;
        bench_stats::write_stamp(
            &mut self.out[stamp..stamp + bench_stats::STAMP_LEN],
            run,
            publisher,
            seq,
            sent_ns,
        );
    }

    fn allocate_pid(&mut self) -> u16 {
        assert!(self.in_flight < u16::MAX as usize, "window above 65,535");
        loop {
            let pid = self.next_pid;
            self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
            let slot = &mut self.slots[usize::from(pid)];
            if *slot == Slot::Free {
                *slot = Slot::Published;
                self.in_flight += 1;
                return pid;
            }
        }
    }

    /// Queues bytes to write as they are (PINGREQ, DISCONNECT).
    pub(crate) fn queue_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Bytes waiting to be written.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// `n` bytes of [`RawSession::pending`] were written.
    pub(crate) fn written(&mut self, n: usize) {
        self.out_pos += n;
        if self.out_pos >= self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        } else if self.out_pos > 64 * 1024 && self.out_pos * 2 > self.out.len() {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Handles every whole packet at the front of `input`: each received PUBLISH's payload
    /// goes to `on_payload` (a QoS 2 one only the first time until its PUBREL), the answers
    /// are queued. Returns the bytes consumed (the rest is an incomplete packet), or the
    /// protocol error that must end the connection.
    pub(crate) fn on_input(
        &mut self,
        input: &[u8],
        on_payload: &mut impl FnMut(&[u8]),
    ) -> Result<usize, String> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            // The 4-byte acknowledgement (3.1.1, and 5.0's Success without properties): by hand.
            if let [first @ (PUBACK | PUBREC | PUBREL | PUBCOMP), 2, hi, lo, ..] = *rest {
                self.on_response(first, u16::from_be_bytes([hi, lo]), ReasonCode::Success)?;
                used += 4;
                continue;
            }
            let Some((packet, size)) = self
                .decoder
                .decode_slice(rest)
                .map_err(|e| format!("invalid packet from the server: {e}"))?
            else {
                return Ok(used);
            };
            used += size;
            match packet {
                PacketRef::Publish(publish) => match publish.qos_pid {
                    QosPid::AtMostOnce => on_payload(publish.payload),
                    QosPid::AtLeastOnce(pid) => {
                        on_payload(publish.payload);
                        // MQTT-4.3.2-2: PUBACK with the PUBLISH's identifier.
                        self.queue_ack(PUBACK, pid.get());
                    }
                    QosPid::ExactlyOnce(pid) => {
                        // MQTT-4.3.3-2: PUBREC; delivered once until the PUBREL.
                        if self.mark_awaiting_pubrel(pid.get()) {
                            on_payload(publish.payload);
                        }
                        self.queue_ack(PUBREC, pid.get());
                    }
                },
                PacketRef::Other(Packet::PubAck(r)) => self.on_response_packet(PUBACK, &r)?,
                PacketRef::Other(Packet::PubRec(r)) => self.on_response_packet(PUBREC, &r)?,
                PacketRef::Other(Packet::PubRel(r)) => self.on_response_packet(PUBREL, &r)?,
                PacketRef::Other(Packet::PubComp(r)) => self.on_response_packet(PUBCOMP, &r)?,
                PacketRef::Other(Packet::PingResp) => {}
                PacketRef::Other(Packet::Disconnect(d)) => {
                    return Err(format!("DISCONNECT from the server: {}", d.reason_code));
                }
                PacketRef::Other(other) => {
                    return Err(format!(
                        "unexpected {:?} from the server",
                        other.packet_type()
                    ));
                }
            }
        }
    }

    fn on_response_packet(&mut self, kind: u8, r: &PubResponse) -> Result<(), String> {
        self.on_response(kind, r.packet_id.get(), r.reason_code)
    }

    /// A PUBACK, PUBREC, PUBREL or PUBCOMP for `pid`.
    fn on_response(&mut self, kind: u8, pid: u16, code: ReasonCode) -> Result<(), String> {
        if pid == 0 {
            return Err("packet identifier 0 from the server".into());
        }
        if kind == PUBREL {
            // MQTT-4.3.3-2: PUBCOMP with the PUBREL's identifier; the identifier is released.
            if let Some(word) = self.awaiting_pubrel.get_mut(usize::from(pid / 64)) {
                *word &= !(1 << (pid % 64));
            }
            self.queue_ack(PUBCOMP, pid);
            return Ok(());
        }
        let expected = if kind == PUBCOMP {
            Slot::Released
        } else {
            Slot::Published
        };
        let qos2 = self.pid_at.is_some() && self.is_qos2();
        let slot = self
            .slots
            .get_mut(usize::from(pid))
            .filter(|s| **s == expected && (kind == PUBACK) != qos2)
            .ok_or_else(|| format!("unexpected {} for packet identifier {pid}", name(kind)))?;
        if code.is_error() {
            *slot = Slot::Free;
            self.in_flight -= 1;
            self.refused += 1;
            self.first_refusal
                .get_or_insert_with(|| format!("{} {code}", name(kind)));
        } else if kind == PUBREC {
            // MQTT-4.3.3-1: PUBREL with the PUBLISH's identifier.
            *slot = Slot::Released;
            self.queue_ack(PUBREL, pid);
        } else {
            *slot = Slot::Free;
            self.in_flight -= 1;
            self.acked += 1;
        }
        Ok(())
    }

    /// Whether this publisher publishes at QoS 2 (its template says so).
    fn is_qos2(&self) -> bool {
        self.template.first().is_some_and(|b| (b >> 1) & 0b11 == 2)
    }

    /// Records a QoS 2 `pid` as answered with PUBREC; `false` when it already was (a
    /// re-sent PUBLISH, not to be delivered again).
    fn mark_awaiting_pubrel(&mut self, pid: u16) -> bool {
        if self.awaiting_pubrel.is_empty() {
            self.awaiting_pubrel = vec![0; (1 << 16) / 64];
        }
        let word = &mut self.awaiting_pubrel[usize::from(pid / 64)];
        let bit = 1u64 << (pid % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    fn queue_ack(&mut self, first: u8, pid: u16) {
        let [hi, lo] = pid.to_be_bytes();
        self.out.extend_from_slice(&[first, 2, hi, lo]);
    }
}

fn name(kind: u8) -> &'static str {
    match kind {
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        _ => "PUBCOMP",
    }
}

/// One raw connection: the socket, its read buffer and its session.
pub(crate) struct RawConn {
    stream: TcpStream,
    input: Vec<u8>,
    /// `input[..filled]` holds bytes read and not yet consumed.
    filled: usize,
    max_packet: usize,
    session: RawSession,
    /// Half the keep alive: a PINGREQ goes out after this long without a write.
    ping_every: Option<Duration>,
    /// The server's Receive Maximum (MQTT 5), if it sent one.
    receive_maximum: Option<u16>,
}

impl RawConn {
    /// Connects to the plan's broker as client `id` (clean session) and waits for CONNACK.
    pub(crate) async fn connect(plan: &Plan, id: &str) -> Result<Self, String> {
        let version = if plan.v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let stream = timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((plan.host.as_str(), plan.port)),
        )
        .await
        .map_err(|_| format!("{id}: timed out connecting"))?
        .map_err(|e| format!("{id}: cannot connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("{id}: TCP_NODELAY: {e}"))?;
        let max_packet = (plan.size as u32).saturating_add(1024).max(1 << 20);
        let mut conn = RawConn {
            stream,
            input: vec![0; READ_BUFFER],
            filled: 0,
            max_packet: max_packet as usize,
            session: RawSession::new(version, max_packet),
            ping_every: (plan.keep_alive > 0)
                .then(|| Duration::from_secs(plan.keep_alive.into()) / 2),
            receive_maximum: None,
        };
        let mut connect = Connect::new(
            version,
            MqttString::new(id).map_err(|e| format!("client id {id}: {e}"))?,
        );
        connect.keep_alive = plan.keep_alive;
        connect.clean_start = true;
        let packet = encode(Packet::Connect(Box::new(connect)), version)?;
        match conn.exchange(&packet, id, "CONNACK").await? {
            Packet::ConnAck(ack) if !ack.reason_code.is_error() => {
                conn.receive_maximum = ack.properties.receive_maximum.map(|m| m.get());
                Ok(conn)
            }
            Packet::ConnAck(ack) => Err(format!("{id}: connection refused: {}", ack.reason_code)),
            other => Err(format!("{id}: expected CONNACK, got {other:?}")),
        }
    }

    /// Subscribes to `filter` at `qos` and waits for the SUBACK.
    pub(crate) async fn subscribe(
        &mut self,
        id: &str,
        filter: &str,
        qos: u8,
    ) -> Result<(), String> {
        let filter = TopicFilter::new(filter).map_err(|e| format!("filter {filter}: {e}"))?;
        let qos = match qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        let pid = PacketId::new(1).expect("1 is not 0");
        let subscribe = Subscribe::new(pid, filter, SubscriptionOptions::new(qos));
        let packet = encode(Packet::Subscribe(subscribe), self.session.decoder.version())?;
        match self.exchange(&packet, id, "SUBACK").await? {
            Packet::SubAck(ack) if ack.reason_codes.iter().all(|c| !c.is_error()) => Ok(()),
            Packet::SubAck(ack) => Err(format!("{id}: subscription refused: {ack:?}")),
            other => Err(format!("{id}: expected SUBACK, got {other:?}")),
        }
    }

    /// Writes `packet` and reads the next packet (the handshake's answer), within
    /// [`CONNECT_TIMEOUT`].
    async fn exchange(&mut self, packet: &[u8], id: &str, what: &str) -> Result<Packet, String> {
        let io = async {
            self.stream
                .write_all(packet)
                .await
                .map_err(|e| e.to_string())?;
            loop {
                if let Some((p, used)) = self
                    .session
                    .decoder
                    .decode_slice(&self.input[..self.filled])
                    .map_err(|e| e.to_string())?
                {
                    let p = p.into_packet();
                    self.consume(used);
                    return Ok(p);
                }
                if self.filled == self.input.len() {
                    return Err("packet too large".to_owned());
                }
                let n = self
                    .stream
                    .read(&mut self.input[self.filled..])
                    .await
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed".to_owned());
                }
                self.filled += n;
            }
        };
        timeout(CONNECT_TIMEOUT, io)
            .await
            .map_err(|_| format!("{id}: timed out waiting for {what}"))?
            .map_err(|e| format!("{id}: {what}: {e}"))
    }

    fn consume(&mut self, used: usize) {
        self.input.copy_within(used..self.filled, 0);
        self.filled -= used;
    }

    /// Reads what the socket has (once) and handles every whole packet. `Ok(false)`: nothing
    /// to read now.
    fn read_some(&mut self, on_payload: &mut impl FnMut(&[u8], Instant)) -> Result<bool, String> {
        if self.filled == self.input.len() {
            if self.input.len() >= self.max_packet + 5 {
                return Err("packet too large".into());
            }
            let grown = (self.input.len() * 2).min(self.max_packet + 5);
            self.input.resize(grown, 0);
        }
        match self.stream.try_read(&mut self.input[self.filled..]) {
            Ok(0) => Err("connection closed by the server".into()),
            Ok(n) => {
                self.filled += n;
                // Everything this read brought arrived now.
                let now = Instant::now();
                let used = self
                    .session
                    .on_input(&self.input[..self.filled], &mut |p| on_payload(p, now))?;
                self.consume(used);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes what is pending (once). Returns the bytes written.
    fn write_some(&mut self) -> Result<usize, String> {
        match self.stream.try_write(self.session.pending()) {
            Ok(n) => {
                self.session.written(n);
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Waits until the socket can be read or (with bytes pending) written, or `wake`
    /// resolves; then reads and writes what it can. Returns whether anything was written.
    async fn turn(
        &mut self,
        wake: impl Future<Output = ()>,
        on_payload: &mut impl FnMut(&[u8], Instant),
    ) -> Result<bool, String> {
        let interest = if self.session.pending().is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        let ready = tokio::select! {
            biased;
            ready = self.stream.ready(interest) => ready.map_err(|e| e.to_string())?,
            () = wake => return Ok(false),
        };
        let mut wrote = false;
        if ready.is_readable() || ready.is_read_closed() {
            self.read_some(on_payload)?;
        }
        if !self.session.pending().is_empty() && (ready.is_writable() || ready.is_readable()) {
            wrote = self.write_some()? > 0;
        }
        Ok(wrote)
    }

    /// Writes DISCONNECT and closes, within [`DISCONNECT_TIMEOUT`].
    async fn disconnect(mut self) -> Result<(), String> {
        self.session.queue_raw(&DISCONNECT);
        let io = async {
            let pending = self.session.pending().to_vec();
            self.stream.write_all(&pending).await?;
            self.stream.shutdown().await
        };
        match timeout(DISCONNECT_TIMEOUT, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }

    /// Publishes to `topic` as publisher `index` until the plan's count or the stop flag,
    /// then waits for the outstanding acknowledgements and disconnects.
    pub(crate) async fn publish(
        mut self,
        plan: &Plan,
        ctl: &Control,
        index: u32,
        topic: &str,
    ) -> PubResult {
        let mut result = PubResult::default();
        if let Err(e) = self.session.set_template(topic, plan.qos, plan.size) {
            result.error(e);
            return result;
        }
        let error = self.publish_loop(plan, ctl, index, &mut result).await;
        result.acked = self.session.acked;
        if let Some(e) = self.session.first_refusal.take() {
            result.errors += self.session.refused - 1;
            result.error(format!("refused: {e}"));
        }
        if let Some(e) = error {
            result.error(e);
        } else if let Err(e) = self.disconnect().await {
            result.error(format!("disconnect: {e}"));
        }
        result
    }

    async fn publish_loop(
        &mut self,
        plan: &Plan,
        ctl: &Control,
        index: u32,
        result: &mut PubResult,
    ) -> Option<String> {
        let mut window = plan.window.clamp(1, u16::MAX as usize);
        if let Some(max) = self.receive_maximum {
            window = window.min(usize::from(max));
        }
        let qos0 = plan.qos == 0;
        let start = Instant::now();
        let mut seq: u64 = 0;
        let mut stopping: Option<Instant> = None;
        // QoS 0: messages in the write buffer (acknowledged once written).
        let mut unwritten = 0u64;
        let mut ping = self.ping_every.map(|every| {
            let mut t = tokio::time::interval_at((Instant::now() + every).into(), every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        let mut wrote_since_ping = false;
        let mut no_input = |_: &[u8], _: Instant| {};
        loop {
            // Fill the window.
            let mut due = None;
            if stopping.is_none() {
                let before = seq;
                let room = if qos0 {
                    if unwritten == 0 {
                        window
                    } else {
                        0
                    }
                } else {
                    window - self.session.in_flight()
                };
                // One clock reading per batch: the batch goes out in one write.
                let now = Instant::now();
                let sent_ns = now.saturating_duration_since(plan.base).as_nanos() as u64;
                for _ in 0..room {
                    if !more(plan, ctl, seq) {
                        stopping = Some(now + ACK_TIMEOUT);
                        break;
                    }
                    if let Some(rate) = plan.rate {
                        let at = start + Duration::from_secs_f64(seq as f64 / rate);
                        if at > now {
                            due = Some(at);
                            break;
                        }
                    }
                    self.session.queue_publish(plan.run, index, seq, sent_ns);
                    seq += 1;
                }
                let n = seq - before;
                if n > 0 {
                    result.sent += n;
                    result.last_send = Some(now);
                    ctl.counters.sent.fetch_add(n, Ordering::Relaxed);
                    if qos0 {
                        unwritten = n;
                    }
                }
            }
            if stopping.is_some() && self.session.in_flight() == 0 && unwritten == 0 {
                return None;
            }
            let wake_at = match (due, stopping) {
                (Some(d), _) => Some(d),
                (None, Some(s)) => Some(s),
                // Flat out with a full window: the stop flag is checked when a slot frees.
                (None, None) => None,
            };
            let acked_before = self.session.acked;
            let mut ticked = false;
            let wake = async {
                match (&mut ping, wake_at) {
                    (Some(p), Some(at)) => {
                        tokio::select! {
                            _ = p.tick() => ticked = true,
                            () = sleep_until(at.into()) => {}
                        }
                    }
                    (Some(p), None) => {
                        p.tick().await;
                        ticked = true;
                    }
                    (None, Some(at)) => sleep_until(at.into()).await,
                    (None, None) => std::future::pending().await,
                }
            };
            let wrote = match self.turn(wake, &mut no_input).await {
                Ok(w) => w,
                Err(e) => return Some(e),
            };
            wrote_since_ping |= wrote;
            if qos0 && unwritten > 0 && self.session.pending().is_empty() {
                self.session.acked += unwritten;
                unwritten = 0;
            }
            let acked = self.session.acked - acked_before;
            if acked > 0 {
                ctl.counters.acked.fetch_add(acked, Ordering::Relaxed);
            }
            if let Some(s) = stopping {
                if Instant::now() >= s {
                    return Some("timed out waiting for acknowledgements".into());
                }
            }
            if ticked {
                // Half the keep alive has passed: PINGREQ unless something was written since.
                if !wrote_since_ping {
                    self.session.queue_raw(&PINGREQ);
                }
                wrote_since_ping = false;
            }
        }
    }

    /// Receives until `done` turns true or the connection ends, answering every QoS 1/2
    /// PUBLISH and PUBREL and handing each payload to `on_payload`; then disconnects.
    /// Returns the error that ended the connection, if one did.
    pub(crate) async fn receive(
        mut self,
        mut on_payload: impl FnMut(&[u8], Instant),
        mut done: watch::Receiver<bool>,
    ) -> Option<String> {
        let mut ping = self.ping_every.map(|every| {
            let mut t = tokio::time::interval_at((Instant::now() + every).into(), every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        let mut wrote_since_ping = false;
        let mut finished = pin!(async move {
            let _ = done.wait_for(|d| *d).await;
        });
        loop {
            let (mut ticked, mut is_done) = (false, false);
            let wake = async {
                match ping.as_mut() {
                    Some(p) => {
                        tokio::select! {
                            _ = p.tick() => ticked = true,
                            () = &mut finished => is_done = true,
                        }
                    }
                    None => {
                        (&mut finished).await;
                        is_done = true;
                    }
                }
            };
            match self.turn(wake, &mut on_payload).await {
                Ok(wrote) => wrote_since_ping |= wrote,
                Err(e) => return Some(e),
            }
            if is_done {
                break;
            }
            if ticked {
                if !wrote_since_ping {
                    self.session.queue_raw(&PINGREQ);
                }
                wrote_since_ping = false;
            }
        }
        let _ = self.disconnect().await;
        None
    }
}

/// `packet` encoded for `version`.
fn encode(packet: Packet, version: ProtocolVersion) -> Result<Vec<u8>, String> {
    let mut buf = BytesMut::new();
    packet
        .encode(version, &mut buf)
        .map_err(|e| format!("{:?}: {e}", packet.packet_type()))?;
    Ok(buf.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

    fn publisher(version: ProtocolVersion, qos: u8) -> RawSession {
        let mut s = RawSession::new(version, 1 << 20);
        s.set_template("bench/3", qos, 40).expect("valid topic");
        s
    }

    /// Every packet of `bytes`, owned, with the payloads of the PUBLISHes.
    fn decode_all(version: ProtocolVersion, mut bytes: &[u8]) -> Vec<Packet> {
        let decoder = Decoder::new(version);
        let mut out = Vec::new();
        while let Some((p, used)) = decoder.decode_slice(bytes).expect("valid packets") {
            out.push(p.into_packet());
            bytes = &bytes[used..];
        }
        assert!(bytes.is_empty(), "a partial packet left: {bytes:?}");
        out
    }

    fn publish_bytes(version: ProtocolVersion, qos_pid: QosPid, payload: &[u8]) -> Vec<u8> {
        let topic = TopicName::new("bench/0").expect("valid");
        let publish = Publish::new(topic, qos_pid, Bytes::copy_from_slice(payload));
        encode(Packet::Publish(publish), version).expect("encodes")
    }

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).expect("not 0")
    }

    #[test]
    fn queued_publishes_decode_with_their_stamp_and_fresh_packet_ids() {
        for version in [V311, ProtocolVersion::V5] {
            for qos in 0..=2u8 {
                let mut s = publisher(version, qos);
                s.queue_publish(7, 3, 100, 5_000);
                s.queue_publish(7, 3, 101, 5_000);
                let packets = decode_all(version, s.pending());
                assert_eq!(packets.len(), 2, "{version:?} QoS {qos}");
                for (k, p) in packets.iter().enumerate() {
                    let Packet::Publish(p) = p else {
                        panic!("not a PUBLISH: {p:?}")
                    };
                    assert_eq!(p.topic.as_str(), "bench/3");
                    assert_eq!(p.qos_pid.qos().as_u8(), qos);
                    let expected_pid = (qos > 0).then(|| pid(k as u16 + 1));
                    assert_eq!(p.qos_pid.packet_id(), expected_pid);
                    assert_eq!(p.payload.len(), 40);
                    assert_eq!(&p.payload[..4], &7u32.to_le_bytes());
                    assert_eq!(&p.payload[4..8], &3u32.to_le_bytes());
                    assert_eq!(&p.payload[8..16], &(100 + k as u64).to_le_bytes());
                    assert_eq!(&p.payload[16..24], &5_000u64.to_le_bytes());
                }
                assert_eq!(s.in_flight(), if qos == 0 { 0 } else { 2 });
            }
        }
    }

    #[test]
    fn qos1_pubacks_free_their_slots_in_any_order_and_a_second_one_is_an_error() {
        let mut s = publisher(V311, 1);
        for seq in 0..3 {
            s.queue_publish(1, 0, seq, 0);
        }
        s.written(s.pending().len());
        let mut delivered = 0;
        let used = s
            .on_input(&[PUBACK, 2, 0, 2, PUBACK, 2, 0], &mut |_| delivered += 1)
            .expect("valid");
        assert_eq!(used, 4, "the partial PUBACK is left for the next read");
        assert_eq!((s.acked, s.in_flight()), (1, 2));
        let err = s.on_input(&[PUBACK, 2, 0, 2], &mut |_| {}).unwrap_err();
        assert!(err.contains("unexpected PUBACK"), "{err}");
        assert_eq!(delivered, 0);
        // A PUBREC at QoS 1 is a protocol error too.
        assert!(s.on_input(&[PUBREC, 2, 0, 1], &mut |_| {}).is_err());
    }

    #[test]
    fn packet_ids_in_use_are_skipped_after_wrapping() {
        let mut s = publisher(V311, 1);
        s.queue_publish(1, 0, 0, 0); // 1
        s.queue_publish(1, 0, 1, 0); // 2
        s.on_input(&[PUBACK, 2, 0, 2], &mut |_| {}).expect("valid");
        s.next_pid = u16::MAX;
        s.written(s.pending().len());
        s.queue_publish(1, 0, 2, 0); // 65535
        s.queue_publish(1, 0, 3, 0); // 1 is in use: 2
        let ids: Vec<_> = decode_all(V311, s.pending())
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => p.qos_pid.packet_id().map(PacketId::get),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, [Some(u16::MAX), Some(2)]);
        assert_eq!(s.in_flight(), 3);
    }

    #[test]
    fn qos2_publisher_answers_pubrec_with_pubrel_and_counts_at_pubcomp_mqtt_4_3_3_1() {
        // MQTT-4.3.3-1: the sender MUST send a PUBREL when it receives a PUBREC, with the
        // PUBLISH's identifier, and treat it as unacknowledged until the PUBCOMP.
        let mut s = publisher(V311, 2);
        s.queue_publish(1, 0, 0, 0);
        s.written(s.pending().len());
        assert!(
            s.on_input(&[PUBCOMP, 2, 0, 1], &mut |_| {}).is_err(),
            "PUBCOMP before PUBREC"
        );
        let mut s = publisher(V311, 2);
        s.queue_publish(1, 0, 0, 0);
        s.written(s.pending().len());
        s.on_input(&[PUBREC, 2, 0, 1], &mut |_| {}).expect("valid");
        assert_eq!(s.pending(), [PUBREL, 2, 0, 1]);
        assert_eq!((s.acked, s.in_flight()), (0, 1));
        s.on_input(&[PUBCOMP, 2, 0, 1], &mut |_| {}).expect("valid");
        assert_eq!((s.acked, s.in_flight()), (1, 0));
        assert!(
            s.on_input(&[PUBACK, 2, 0, 1], &mut |_| {}).is_err(),
            "a PUBACK at QoS 2"
        );
    }

    #[test]
    fn mqtt5_reason_codes_success_counts_as_acknowledged_error_as_refused() {
        let v5 = ProtocolVersion::V5;
        let mut s = publisher(v5, 1);
        s.queue_publish(1, 0, 0, 0);
        s.queue_publish(1, 0, 1, 0);
        s.written(s.pending().len());
        // 0x10 No matching subscribers: a success; 0x87 Not authorized: a refusal.
        let mut input = Vec::new();
        for (id, code) in [
            (1, ReasonCode::NoMatchingSubscribers),
            (2, ReasonCode::NotAuthorized),
        ] {
            let mut ack = PubResponse::new(pid(id));
            ack.reason_code = code;
            input.extend(encode(Packet::PubAck(ack), v5).expect("encodes"));
        }
        assert_eq!(s.on_input(&input, &mut |_| {}), Ok(input.len()));
        assert_eq!((s.acked, s.refused, s.in_flight()), (1, 1, 0));
        assert!(s
            .first_refusal
            .as_deref()
            .is_some_and(|r| r.contains("PUBACK")));
    }

    #[test]
    fn subscriber_answers_qos1_publish_with_puback_mqtt_4_3_2_2() {
        // MQTT-4.3.2-2: the receiver MUST respond with a PUBACK containing the Packet
        // Identifier from the incoming PUBLISH.
        let mut s = RawSession::new(V311, 1 << 20);
        let mut input = publish_bytes(V311, QosPid::AtLeastOnce(pid(7)), b"one");
        input.extend(publish_bytes(V311, QosPid::AtMostOnce, b"two"));
        let whole = input.len();
        input.extend(&publish_bytes(V311, QosPid::AtLeastOnce(pid(8)), b"three")[..5]);
        let mut got: Vec<Vec<u8>> = Vec::new();
        let used = s
            .on_input(&input, &mut |p| got.push(p.to_vec()))
            .expect("valid");
        assert_eq!(used, whole);
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(s.pending(), [PUBACK, 2, 0, 7]);
    }

    #[test]
    fn subscriber_delivers_a_qos2_message_once_until_pubrel_mqtt_4_3_3_2() {
        // MQTT-4.3.3-2: the receiver MUST respond with PUBREC, acknowledge a re-sent PUBLISH
        // with the same identifier again with PUBREC without delivering it twice until the
        // PUBREL, and respond to the PUBREL with PUBCOMP.
        let mut s = RawSession::new(V311, 1 << 20);
        let first = publish_bytes(V311, QosPid::ExactlyOnce(pid(9)), b"m");
        let mut got = 0;
        s.on_input(&first, &mut |_| got += 1).expect("valid");
        let mut again = first.clone();
        again[0] |= 0b1000; // DUP
        s.on_input(&again, &mut |_| got += 1).expect("valid");
        assert_eq!(got, 1);
        s.on_input(&[PUBREL, 2, 0, 9], &mut |_| {}).expect("valid");
        assert_eq!(
            s.pending(),
            [PUBREC, 2, 0, 9, PUBREC, 2, 0, 9, PUBCOMP, 2, 0, 9]
        );
        // Released: the identifier now carries a new message.
        s.on_input(&first, &mut |_| got += 1).expect("valid");
        assert_eq!(got, 2);
    }

    #[test]
    fn malformed_acknowledgements_end_the_connection() {
        let mut s = publisher(V311, 1);
        s.queue_publish(1, 0, 0, 0);
        // MQTT-3.6.1-1: PUBREL's fixed header flags are 0010; 0000 is malformed.
        assert!(s.on_input(&[0x60, 2, 0, 1], &mut |_| {}).is_err());
        // Packet identifier 0.
        assert!(s.on_input(&[PUBACK, 2, 0, 0], &mut |_| {}).is_err());
        // A CONNACK in the middle of a session.
        assert!(s.on_input(&[0x20, 2, 0, 0], &mut |_| {}).is_err());
        assert_eq!((s.acked, s.in_flight()), (0, 1));
    }

    #[test]
    fn partial_writes_keep_the_rest_pending() {
        let mut s = RawSession::new(V311, 1 << 20);
        s.queue_raw(&PINGREQ);
        s.queue_raw(&DISCONNECT);
        s.written(3);
        assert_eq!(s.pending(), [0x00]);
        s.queue_raw(&[1, 2]);
        assert_eq!(s.pending(), [0x00, 1, 2]);
        s.written(3);
        assert!(s.pending().is_empty());
    }
}
