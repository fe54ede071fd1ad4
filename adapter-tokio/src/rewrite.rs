//! Layer 4c: a connection's CONNECT rewritten with what its transport established (a TLS
//! client certificate's name, for mosquitto's `use_identity_as_username`): [`ConnectRewrite`]
//! and the transport that applies it. Imports `transport`.

// The transport is applied by tokio's listeners (`tokio_transports`).
#![cfg_attr(not(feature = "tokio-runtime"), allow(dead_code))]

use std::io;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use mqtt_streaming_proto::{Connect, Decoder, Packet, ProtocolVersion};

use crate::transport::{BoxTransport, Transport};

/// Edits each connection's CONNECT before the broker or server sees it, given the identity
/// the transport established: the TLS client certificate's Common Name (`None` without a
/// certificate, or on a listener without TLS). Set with
/// [`ListenOptions::rewrite_connect`](crate::ListenOptions::rewrite_connect).
pub type ConnectRewrite = Arc<dyn Fn(Option<&str>, &mut Connect) + Send + Sync>;

enum State {
    /// Reading the first packet (at most `limit` bytes).
    Collecting(BytesMut),
    /// Handing over the rewritten CONNECT and what followed it.
    Replaying(Bytes),
    /// Everything after: the inner transport's bytes as they are.
    Passing,
}

/// A transport whose first packet, which must be a CONNECT, goes through a [`ConnectRewrite`].
pub(crate) struct RewriteConnect {
    inner: BoxTransport,
    identity: Option<String>,
    rewrite: ConnectRewrite,
    limit: usize,
    state: State,
}

impl RewriteConnect {
    /// `limit` bounds the CONNECT (a bigger one ends the connection).
    pub(crate) fn new(
        inner: BoxTransport,
        identity: Option<String>,
        rewrite: ConnectRewrite,
        limit: usize,
    ) -> Self {
        Self {
            inner,
            identity,
            rewrite,
            limit,
            state: State::Collecting(BytesMut::new()),
        }
    }

    /// The rewritten CONNECT once `collected` holds a whole first packet.
    fn try_rewrite(&self, collected: &mut BytesMut) -> io::Result<Option<Bytes>> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let limit = u32::try_from(self.limit).unwrap_or(u32::MAX);
        let decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(limit);
        let Some(packet) = decoder
            .decode(collected)
            .map_err(|e| invalid(format!("first packet: {e}")))?
        else {
            return Ok(None);
        };
        let Packet::Connect(mut connect) = packet else {
            return Err(invalid("the first packet is not a CONNECT".into()));
        };
        (self.rewrite)(self.identity.as_deref(), &mut connect);
        let version = connect.protocol;
        let mut out = BytesMut::new();
        Packet::Connect(connect)
            .encode(version, &mut out)
            .map_err(|e| invalid(format!("rewritten CONNECT: {e}")))?;
        out.extend_from_slice(collected);
        Ok(Some(out.freeze()))
    }
}

impl Transport for RewriteConnect {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        loop {
            match &mut self.state {
                State::Passing => return self.inner.poll_read(cx, buf),
                State::Replaying(bytes) => {
                    if bytes.is_empty() {
                        self.state = State::Passing;
                        continue;
                    }
                    let room = (buf.capacity() - buf.len()).max(1);
                    let chunk = bytes.split_to(room.min(bytes.len()));
                    buf.extend_from_slice(&chunk);
                    return Poll::Ready(Ok(chunk.len()));
                }
                State::Collecting(collected) => {
                    let mut taken = std::mem::take(collected);
                    let rewritten = self.try_rewrite(&mut taken);
                    match rewritten? {
                        Some(bytes) => {
                            self.state = State::Replaying(bytes);
                            continue;
                        }
                        None => {
                            if taken.len() >= self.limit {
                                return Poll::Ready(Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    "the CONNECT is too large",
                                )));
                            }
                            taken.reserve(4096.min(self.limit - taken.len()).max(1));
                            let read = self.inner.poll_read(cx, &mut taken);
                            self.state = State::Collecting(taken);
                            if ready!(read)? == 0 {
                                return Poll::Ready(Ok(0));
                            }
                        }
                    }
                }
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.inner.poll_write(cx, buf)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_close(cx)
    }

    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.state {
            State::Passing => self.inner.poll_read_ready(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::Waker;

    use mqtt_streaming_proto::MqttString;

    use super::*;

    /// Hands out its chunks one read at a time.
    struct Chunks(VecDeque<Vec<u8>>);

    impl Transport for Chunks {
        fn poll_read(
            &mut self,
            _: &mut Context<'_>,
            buf: &mut BytesMut,
        ) -> Poll<io::Result<usize>> {
            let chunk = self.0.pop_front().unwrap_or_default();
            buf.extend_from_slice(&chunk);
            Poll::Ready(Ok(chunk.len()))
        }
        fn poll_write(&mut self, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn read_all(transport: &mut RewriteConnect) -> io::Result<Vec<u8>> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = BytesMut::new();
        loop {
            out.reserve(7);
            match transport.poll_read(&mut cx, &mut out) {
                Poll::Ready(Ok(0)) => return Ok(out.to_vec()),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => unreachable!(),
            }
        }
    }

    fn set_user() -> ConnectRewrite {
        Arc::new(|cn, connect| {
            connect.username = cn.map(|cn| MqttString::new(cn).unwrap());
            connect.password = None;
        })
    }

    #[test]
    fn the_first_connect_is_rewritten_and_the_rest_passes_unchanged() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let mut connect = Connect::new(version, MqttString::new("dev").unwrap());
            connect.username = Some(MqttString::new("claimed").unwrap());
            connect.password = Some(Bytes::from_static(b"pw"));
            let mut wire = BytesMut::new();
            Packet::Connect(Box::new(connect.clone()))
                .encode(version, &mut wire)
                .unwrap();
            wire.extend_from_slice(&[0xC0, 0x00]); // PINGREQ after it
                                                   // Split into 3-byte reads: the CONNECT arrives in pieces.
            let chunks = wire.chunks(3).map(<[u8]>::to_vec).collect();
            let mut t = RewriteConnect::new(
                Box::new(Chunks(chunks)),
                Some("cert-name".into()),
                set_user(),
                1024,
            );
            let mut out = BytesMut::from(&read_all(&mut t).unwrap()[..]);
            let decoder = Decoder::new(version);
            let Some(Packet::Connect(rewritten)) = decoder.decode(&mut out).unwrap() else {
                panic!("not a CONNECT");
            };
            assert_eq!(rewritten.username.as_ref().unwrap().as_str(), "cert-name");
            assert_eq!(rewritten.password, None);
            assert_eq!(rewritten.client_id, connect.client_id);
            assert_eq!(&out[..], [0xC0, 0x00]);
        }
    }

    #[test]
    fn a_first_packet_not_connect_or_too_large_ends_the_connection() {
        let ping = VecDeque::from([vec![0xC0, 0x00]]);
        let mut t = RewriteConnect::new(Box::new(Chunks(ping)), None, set_user(), 1024);
        assert_eq!(
            read_all(&mut t).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let connect = Connect::new(
            ProtocolVersion::V5,
            MqttString::new(&"x".repeat(200)).unwrap(),
        );
        let mut wire = BytesMut::new();
        Packet::Connect(Box::new(connect))
            .encode(ProtocolVersion::V5, &mut wire)
            .unwrap();
        let mut t = RewriteConnect::new(
            Box::new(Chunks(VecDeque::from([wire.to_vec()]))),
            None,
            set_user(),
            64,
        );
        assert_eq!(
            read_all(&mut t).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // The end of the stream before a whole CONNECT: the end, no error.
        let mut t = RewriteConnect::new(
            Box::new(Chunks(VecDeque::from([vec![0x10]]))),
            None,
            set_user(),
            64,
        );
        assert_eq!(read_all(&mut t).unwrap(), b"");
    }
}
