//! Issue 10, item 5 ("memory is not given back"): what the broker server keeps per connection
//! goes when the connection goes, whichever of its tasks sees the end first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use mqtt_streaming_proto::{Connect, MqttString, Packet, ProtocolVersion};
use mqtt_streaming_session::broker::BrokerConfig;
use mqtt_streaming_tokio::BrokerServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A transport that delivers one CONNECT, then neither ends nor delivers more, and fails every
/// write (a peer that reset the connection after sending CONNECT, as a writer sees it before
/// the reader does).
struct WritesFail {
    connect: Option<BytesMut>,
}

impl WritesFail {
    fn new(i: usize) -> Self {
        let version = ProtocolVersion::V5;
        let connect = Connect::new(version, MqttString::new(&format!("reset-{i}")).unwrap());
        let mut buf = BytesMut::new();
        Packet::from(connect).encode(version, &mut buf).unwrap();
        Self { connect: Some(buf) }
    }
}

impl AsyncRead for WritesFail {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.connect.take() {
            Some(connect) => {
                buf.put_slice(&connect);
                Poll::Ready(Ok(()))
            }
            None => Poll::Pending,
        }
    }
}

impl AsyncWrite for WritesFail {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A connection whose writer fails (on the CONNACK) before anything else ends it: the broker
/// closes it and forgets it, so that nothing of it stays in the list of closing connections
/// and graceful shutdown, which waits for that list to empty, still completes. (It waited
/// forever after one such connection, and each one kept its entry.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_failing_first_leaves_nothing_behind() {
    const CONNECTIONS: usize = 50;
    let handle = BrokerServer::new(BrokerConfig::default()).spawn();
    for i in 0..CONNECTIONS {
        handle.serve_transport(WritesFail::new(i)).await.unwrap();
    }
    let closed = async {
        loop {
            let stats = handle.stats().await.unwrap();
            if stats.connections_total == CONNECTIONS as u64 && stats.connections == 0 {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let stats = tokio::time::timeout(Duration::from_secs(20), closed)
        .await
        .expect("every connection closed");
    assert_eq!(stats.sessions, 0);
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown())
        .await
        .expect("shutdown completes");
    assert!(handle.is_stopped());
}
