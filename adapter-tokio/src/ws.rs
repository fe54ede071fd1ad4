//! Layer 4d (feature `websocket`, or `engine-websocket` for the other adapters): MQTT over
//! WebSocket on any futures-io stream, with async-tungstenite's runtime-free core: the client
//! and server handshakes (subprotocol `mqtt`) and [`WsTransport`], a WebSocket as the engine's
//! byte [`Transport`]. Imports only `transport`.
//!
//! What MQTT asks of its WebSocket binding (MQTT 5.0 section 6, 3.1.1 section 6):
//! packets travel in binary frames ([MQTT-6.0.0-1]; a text frame closes the connection);
//! frames need not align with packets ([MQTT-6.0.0-2]: reads append each frame's bytes to the
//! one read buffer, so a packet split across frames and several packets in one frame decode
//! alike); the client offers the subprotocol `mqtt` ([MQTT-6.0.0-3]) and the server answers
//! with it ([MQTT-6.0.0-4]).

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;

use crate::transport::{peer_gone, Transport};

/// The subprotocol MQTT is carried under.
pub const WS_SUBPROTOCOL: &str = "mqtt";

/// WebSocket limits (what a peer controls is bounded here).
#[derive(Clone, Debug)]
pub struct WsOptions {
    max_message_size: usize,
}

impl Default for WsOptions {
    /// Messages and frames of at most 16 MiB.
    fn default() -> Self {
        Self {
            max_message_size: 16 << 20,
        }
    }
}

impl WsOptions {
    /// The largest WebSocket message (and frame) accepted from the peer; a larger one closes
    /// the connection. An MQTT packet may be split across several messages, so this need not
    /// exceed the largest packet, but peers usually send one packet per message.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.max(1024);
        self
    }

    fn config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_size))
            .max_frame_size(Some(self.max_message_size))
    }
}

fn to_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// A WebSocket carrying MQTT, as the engine's byte [`Transport`]: each write leaves as one
/// binary message; each binary message read is appended to the read buffer as it is, whatever
/// packets it holds or splits. Pings are answered by the WebSocket layer; a text message is a
/// protocol error ([MQTT-6.0.0-1]); a close frame is the end of the stream.
pub struct WsTransport<S> {
    ws: WebSocketStream<S>,
    /// The close frame is out: closing goes on with the stream beneath.
    closed: bool,
}

impl<S> fmt::Debug for WsTransport<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsTransport").finish_non_exhaustive()
    }
}

impl<S> WsTransport<S>
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static,
{
    /// The client's handshake over `stream` (already connected, TLS included for `wss`):
    /// `GET path` with `Host: authority`, offering the subprotocol `mqtt` ([MQTT-6.0.0-3]);
    /// fails unless the server accepts it.
    pub async fn connect(
        stream: S,
        authority: &str,
        path: &str,
        tls: bool,
        options: &WsOptions,
    ) -> io::Result<Self> {
        let scheme = if tls { "wss" } else { "ws" };
        let mut request = format!("{scheme}://{authority}{path}")
            .into_client_request()
            .map_err(to_io)?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(WS_SUBPROTOCOL),
        );
        // tungstenite fails the handshake when the server answers with another subprotocol
        // or none.
        let (ws, _response) =
            async_tungstenite::client_async_with_config(request, stream, Some(options.config()))
                .await
                .map_err(to_io)?;
        Ok(Self { ws, closed: false })
    }

    /// The server's handshake over an accepted `stream`: answers the subprotocol `mqtt`
    /// ([MQTT-6.0.0-4]) when the client offers it (or `mqttv3.1`, for old clients); a request
    /// that offers other subprotocols only is refused (400); one that offers none is
    /// accepted without.
    pub async fn accept(stream: S, options: &WsOptions) -> io::Result<Self> {
        let callback = |request: &Request, mut response: Response| {
            let offered: Vec<String> = request
                .headers()
                .get_all("Sec-WebSocket-Protocol")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .map(|p| p.trim().to_ascii_lowercase())
                .filter(|p| !p.is_empty())
                .collect();
            if offered.is_empty() {
                return Ok(response);
            }
            let chosen = ["mqtt", "mqttv3.1"]
                .into_iter()
                .find(|p| offered.iter().any(|o| o == p));
            match chosen {
                Some(protocol) => {
                    response
                        .headers_mut()
                        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
                    Ok(response)
                }
                None => {
                    let mut refusal = ErrorResponse::new(Some("subprotocol mqtt required".into()));
                    *refusal.status_mut() = StatusCode::BAD_REQUEST;
                    Err(refusal)
                }
            }
        };
        let ws = async_tungstenite::accept_hdr_async_with_config(
            stream,
            callback,
            Some(options.config()),
        )
        .await
        .map_err(to_io)?;
        Ok(Self { ws, closed: false })
    }

    /// A stream whose WebSocket handshake is already done, by you.
    pub async fn from_raw(stream: S, client: bool, options: &WsOptions) -> Self {
        let role = if client { Role::Client } else { Role::Server };
        Self {
            ws: WebSocketStream::from_raw_socket(stream, role, Some(options.config())).await,
            closed: false,
        }
    }
}

impl<S> Transport for WsTransport<S>
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        loop {
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => {
                    if data.is_empty() {
                        continue;
                    }
                    buf.extend_from_slice(&data);
                    return Poll::Ready(Ok(data.len()));
                }
                // [MQTT-6.0.0-1]: any other data frame closes the connection.
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT over WebSocket: a text frame [MQTT-6.0.0-1]",
                    )))
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(0)),
                // Pings are answered by tungstenite; pongs and raw frames carry no MQTT.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(error)) => return Poll::Ready(Err(to_io(error))),
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(to_io)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A close frame, flushed, then the stream beneath closed (TCP: FIN); the peer's close
        // frame is not awaited (the engine reads no more after closing).
        if !self.closed {
            match ready!(Pin::new(&mut self.ws).poll_close(cx)) {
                Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
                Err(WsError::Io(error)) if peer_gone(&error) => {}
                Err(error) => return Poll::Ready(Err(to_io(error))),
            }
            self.closed = true;
        }
        match ready!(Pin::new(self.ws.get_mut()).poll_close(cx)) {
            Err(error) if peer_gone(&error) => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}
