//! Test support: a tiny server written with the server flow (accepts, grants subscriptions,
//! routes the client's publishes back to it), and what that server saw.

#![allow(dead_code, unreachable_pub)]

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use mqtt_streaming_proto::{
    topic_matches, AckProperties, ConnAckProperties, Connect, MqttString, ProtocolVersion, Publish,
    QoS, ReasonCode, TopicFilter, TopicName, Will,
};
use mqtt_streaming_session::{CloseReason, InboundId, Initiator, Message};
use mqtt_streaming_tokio::{
    connect, serve_connection, Client, ClientEvents, ClientOptions, ConnectionEvent,
    ConnectionHandle, Event, ServerConnection, ServerOptions,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect::new(version, MqttString::new(client_id).unwrap())
}

pub fn topic(name: &str) -> TopicName {
    TopicName::new(name).unwrap()
}

pub fn filter(name: &str) -> TopicFilter {
    TopicFilter::new(name).unwrap()
}

pub fn message(name: &str, qos: QoS, payload: &'static str) -> Message {
    Message::new(topic(name), qos, payload)
}

/// How the test server behaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Refuse every CONNECT with this code.
    pub reject: Option<ReasonCode>,
    /// Answer every SUBSCRIBE with these codes instead of granting the requested QoS.
    pub suback: Option<Vec<ReasonCode>>,
    /// In manual-ack mode: ack every message with this code (None: never ack, the test
    /// acks through the handle it gets from `Seen::Message`).
    pub ack_with: Option<ReasonCode>,
    /// Don't route messages back to the client.
    pub no_echo: bool,
}

/// What the test server saw.
#[derive(Debug)]
pub enum Seen {
    Connect(Box<Connect>),
    Message(Publish, Option<InboundId>),
    Closed {
        initiator: Initiator,
        reason: CloseReason,
        will: Option<Will>,
    },
}

/// Runs the test server over `conn` until the connection closes; reports what it saw.
pub fn spawn_router(mut conn: ServerConnection, behaviour: Behaviour) -> Router {
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let handle = conn.handle().clone();
    let task = tokio::spawn(async move {
        let mut subscriptions: Vec<(TopicFilter, QoS)> = Vec::new();
        while let Some(event) = conn.events().recv().await {
            match event {
                ConnectionEvent::Connect(connect) => {
                    let _ = seen_tx.send(Seen::Connect(connect));
                    match behaviour.reject {
                        Some(code) => conn.reject(code).await.unwrap(),
                        None => conn
                            .accept(ConnAckProperties::default(), None)
                            .await
                            .unwrap(),
                    }
                }
                ConnectionEvent::Subscribe(subscribe) => {
                    let codes = match &behaviour.suback {
                        Some(codes) => codes.clone(),
                        None => subscribe
                            .subscriptions
                            .iter()
                            .map(|s| ReasonCode::granted(s.options.qos))
                            .collect(),
                    };
                    for (s, code) in subscribe.subscriptions.iter().zip(&codes) {
                        if let Some(qos) = code.granted_qos() {
                            subscriptions.retain(|(f, _)| f != &s.filter);
                            subscriptions.push((s.filter.clone(), qos));
                        }
                    }
                    conn.suback(subscribe.packet_id, codes, AckProperties::default())
                        .await
                        .unwrap();
                }
                ConnectionEvent::Unsubscribe(unsubscribe) => {
                    let codes = unsubscribe
                        .filters
                        .iter()
                        .map(|f| {
                            let before = subscriptions.len();
                            subscriptions.retain(|(s, _)| s != f);
                            if subscriptions.len() < before {
                                ReasonCode::Success
                            } else {
                                ReasonCode::NoSubscriptionExisted
                            }
                        })
                        .collect();
                    conn.unsuback(unsubscribe.packet_id, codes, AckProperties::default())
                        .await
                        .unwrap();
                }
                ConnectionEvent::Message { publish, ack } => {
                    if let (Some(id), Some(code)) = (ack, behaviour.ack_with) {
                        conn.ack(id, code).await.unwrap();
                    }
                    if !behaviour.no_echo {
                        let granted = subscriptions
                            .iter()
                            .filter(|(f, _)| topic_matches(f.as_str(), publish.topic.as_str()))
                            .map(|(_, qos)| *qos)
                            .max();
                        if let Some(granted) = granted {
                            let qos = publish.qos_pid.qos().min(granted);
                            let m =
                                Message::new(publish.topic.clone(), qos, publish.payload.clone());
                            // Hand it over without waiting for the client's ack.
                            let _receipt = conn.begin_publish(m).await.unwrap();
                        }
                    }
                    let _ = seen_tx.send(Seen::Message(publish, ack));
                }
                ConnectionEvent::Closed {
                    initiator,
                    reason,
                    will,
                    ..
                } => {
                    let _ = seen_tx.send(Seen::Closed {
                        initiator,
                        reason,
                        will,
                    });
                }
                _ => {}
            }
        }
    });
    Router {
        seen: seen_rx,
        handle,
        task,
    }
}

pub struct Router {
    pub seen: mpsc::UnboundedReceiver<Seen>,
    pub handle: ConnectionHandle,
    pub task: tokio::task::JoinHandle<()>,
}

impl Router {
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the server saw nothing in time")
            .expect("the server is gone")
    }

    pub async fn next_message(&mut self) -> (Publish, Option<InboundId>) {
        loop {
            if let Seen::Message(p, id) = self.next().await {
                return (p, id);
            }
        }
    }

    pub async fn closed(&mut self) -> (Initiator, CloseReason, Option<Will>) {
        loop {
            if let Seen::Closed {
                initiator,
                reason,
                will,
            } = self.next().await
            {
                return (initiator, reason, will);
            }
        }
    }
}

/// A client and the test server over `tokio::io::duplex`.
pub async fn duplex_pair(
    client: ClientOptions,
    server: ServerOptions,
    behaviour: Behaviour,
) -> (Client, ClientEvents, Router) {
    let (client_io, server_io) = tokio::io::duplex(256 * 1024);
    let router = spawn_router(serve_connection(server_io, server), behaviour);
    let (client, events) = connect(client_io, client).await.unwrap();
    (client, events, router)
}

/// The next `Message` event, skipping others.
pub async fn next_message(events: &mut ClientEvents) -> (Publish, Option<InboundId>) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("no event in time")
            .expect("events ended");
        if let Event::Message { publish, ack } = event {
            return (publish, ack);
        }
    }
}

/// The `Closed` event, skipping others.
pub async fn next_closed(events: &mut ClientEvents) -> (Initiator, CloseReason) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("no event in time")
            .expect("events ended before Closed");
        if let Event::Closed {
            initiator, reason, ..
        } = event
        {
            return (initiator, reason);
        }
    }
}

/// A transport wrapper counting `poll_write` calls that wrote something.
pub struct CountingIo<T> {
    pub inner: T,
    pub writes: Arc<AtomicUsize>,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.fetch_add(1, Ordering::SeqCst);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A transport whose writes vanish once `killed` is set (the peer sees nothing more until
/// the transport is shut down): a connection dying without a DISCONNECT.
pub struct Killable<T> {
    pub inner: T,
    pub killed: Arc<AtomicBool>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Killable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Killable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
