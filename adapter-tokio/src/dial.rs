//! Layer 8b: connecting to and listening on an [`Endpoint`] whatever its transport. What a
//! runtime implements ([`Dial`]: its TCP, TLS, WebSocket and Unix streams for an endpoint), the
//! options those transports take ([`TransportOptions`] for clients, [`ListenOptions`] for
//! listeners), and the client over any of them ([`connect_endpoint_on`]);
//! [`transports_for_runtime!`](crate::transports_for_runtime) names them for one runtime
//! (`connect_url`, `connect_endpoint`, `listen_url`, `listen_endpoint`). Imports from the layers below.

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use crate::client::{
    connect_connector_on, connect_transport_on, ClientEvents, ClientOn, ClientOptions,
};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::Error;
use crate::net::Listener;
use crate::reconnect::{bounded_connector, ReconnectPolicy};
use crate::rewrite::ConnectRewrite;
use crate::runtime::Runtime;
#[cfg(feature = "engine-tls")]
use crate::tls::{TlsClient, TlsServer};
use crate::transport::BoxTransport;
#[cfg(feature = "engine-websocket")]
use crate::ws::WsOptions;

/// How a client connects beyond the [`Endpoint`]: the TLS configuration (for `mqtts` and
/// `wss`), the WebSocket limits (for `ws` and `wss`) and the time the connection and its
/// handshakes may take.
///
/// Without TLS options, `mqtts://` and `wss://` use the platform's roots (feature
/// `native-roots`) or Mozilla's (feature `webpki-roots`), and fail without either feature.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    #[cfg(feature = "engine-tls")]
    tls: Option<TlsClient>,
    #[cfg(feature = "engine-websocket")]
    ws: WsOptions,
    connect_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl TransportOptions {
    /// No TLS options, the default WebSocket limits, 30 s to connect.
    pub fn new() -> Self {
        Self {
            #[cfg(feature = "engine-tls")]
            tls: None,
            #[cfg(feature = "engine-websocket")]
            ws: WsOptions::default(),
            connect_timeout: Duration::from_secs(30),
        }
    }

    /// TLS with `tls` (for `mqtts://` and `wss://` endpoints; ignored by the others).
    #[cfg(feature = "engine-tls")]
    pub fn tls(mut self, tls: TlsClient) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS configuration given, if any.
    #[cfg(feature = "engine-tls")]
    pub fn tls_client(&self) -> Option<&TlsClient> {
        self.tls.as_ref()
    }

    /// The TLS configuration given, else one trusting the platform's roots (feature
    /// `native-roots`) or Mozilla's (feature `webpki-roots`).
    #[cfg(feature = "engine-tls")]
    pub fn tls_client_or_default(&self) -> io::Result<TlsClient> {
        if let Some(tls) = &self.tls {
            return Ok(tls.clone());
        }
        default_tls_client()
    }

    /// WebSocket limits (for `ws://` and `wss://`).
    #[cfg(feature = "engine-websocket")]
    pub fn ws(mut self, ws: WsOptions) -> Self {
        self.ws = ws;
        self
    }

    /// The WebSocket limits.
    #[cfg(feature = "engine-websocket")]
    pub fn ws_options(&self) -> &WsOptions {
        &self.ws
    }

    /// How long connecting and the TLS and WebSocket handshakes may take together (30 s by
    /// default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The time connecting may take.
    pub fn timeout(&self) -> Duration {
        self.connect_timeout
    }
}

#[cfg(feature = "engine-tls")]
fn default_tls_client() -> io::Result<TlsClient> {
    #[cfg(feature = "native-roots")]
    {
        Ok(crate::tls::TlsClientOptions::new()
            .native_roots()?
            .build()?)
    }
    #[cfg(all(not(feature = "native-roots"), feature = "webpki-roots"))]
    {
        Ok(crate::tls::TlsClientOptions::new().webpki_roots().build()?)
    }
    #[cfg(not(any(feature = "native-roots", feature = "webpki-roots")))]
    {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "TLS needs roots: give TransportOptions::tls, or enable the feature native-roots or webpki-roots",
        ))
    }
}

/// How a listener serves connections beyond its [`Endpoint`]: the server's TLS configuration
/// (required for `mqtts` and `wss`), the WebSocket limits, and the time a client has for the
/// TLS and WebSocket handshakes (10 s by default; the CONNECT timeout starts after them).
#[derive(Clone)]
pub struct ListenOptions {
    #[cfg(feature = "engine-tls")]
    tls: Option<TlsServer>,
    #[cfg(feature = "engine-websocket")]
    ws: WsOptions,
    handshake_timeout: Duration,
    rewrite: Option<ConnectRewrite>,
    rewrite_limit: usize,
}

impl fmt::Debug for ListenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ListenOptions");
        #[cfg(feature = "engine-tls")]
        debug.field("tls", &self.tls);
        #[cfg(feature = "engine-websocket")]
        debug.field("ws", &self.ws);
        debug
            .field("handshake_timeout", &self.handshake_timeout)
            .field("rewrite_connect", &self.rewrite.is_some())
            .finish()
    }
}

impl Default for ListenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ListenOptions {
    /// No TLS, default WebSocket limits, 10 s for the handshakes.
    pub fn new() -> Self {
        Self {
            #[cfg(feature = "engine-tls")]
            tls: None,
            #[cfg(feature = "engine-websocket")]
            ws: WsOptions::default(),
            handshake_timeout: Duration::from_secs(10),
            rewrite: None,
            rewrite_limit: 64 * 1024,
        }
    }

    /// Edits each connection's CONNECT before the broker or server sees it, given the TLS
    /// client certificate's Common Name ([`certificate_common_name`](crate::certificate_common_name);
    /// `None` without one): mosquitto's `use_identity_as_username` is
    /// `|cn, connect| connect.username = cn.and_then(|cn| MqttString::new(cn).ok())`, with
    /// whatever the application's authentication hook needs to tell such a connection apart.
    /// A first packet that is not a CONNECT, or a CONNECT larger than `limit` bytes, ends the
    /// connection. Applies to every connection of the listener (tokio's listeners; TCP ones
    /// then go through the layered path).
    pub fn rewrite_connect(mut self, rewrite: ConnectRewrite, limit: usize) -> Self {
        self.rewrite = Some(rewrite);
        self.rewrite_limit = limit.max(1);
        self
    }

    /// The CONNECT rewrite and its size limit, if any.
    pub fn connect_rewrite(&self) -> Option<(&ConnectRewrite, usize)> {
        self.rewrite.as_ref().map(|r| (r, self.rewrite_limit))
    }

    /// The server's TLS configuration, for `mqtts://` and `wss://` listeners.
    #[cfg(feature = "engine-tls")]
    pub fn tls(mut self, tls: TlsServer) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS configuration, or an error naming the endpoint that needs one.
    #[cfg(feature = "engine-tls")]
    pub fn tls_server(&self, endpoint: &Endpoint) -> io::Result<&TlsServer> {
        self.tls.as_ref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listening on {endpoint} needs ListenOptions::tls"),
            )
        })
    }

    /// WebSocket limits (for `ws://` and `wss://`).
    #[cfg(feature = "engine-websocket")]
    pub fn ws(mut self, ws: WsOptions) -> Self {
        self.ws = ws;
        self
    }

    /// The WebSocket limits.
    #[cfg(feature = "engine-websocket")]
    pub fn ws_options(&self) -> &WsOptions {
        &self.ws
    }

    /// The time a client has for the TLS and WebSocket handshakes.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The time a client has for the handshakes.
    pub fn handshake_time(&self) -> Duration {
        self.handshake_timeout
    }
}

/// The error for an endpoint whose transport's feature is not compiled in.
pub fn unsupported(endpoint: &Endpoint, feature: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{} endpoints need the feature `{feature}` ({endpoint})",
            endpoint.scheme.as_str()
        ),
    )
}

/// A runtime that connects to and listens on any [`Endpoint`]: TCP always; TLS, WebSocket and
/// Unix sockets when their features are on (an error of kind `Unsupported` otherwise).
/// Implemented by `TokioRuntime` and by the futures-io runtimes (`futures_runtime!`).
pub trait Dial: Runtime + Default {
    /// Connects to `endpoint` and runs the handshakes its transport needs (TLS, WebSocket);
    /// the stream is ready for MQTT.
    fn dial(
        endpoint: &Endpoint,
        options: &TransportOptions,
    ) -> impl Future<Output = io::Result<BoxTransport>> + Send;

    /// Binds a listener for `endpoint` (a Unix socket's file must not exist yet); each
    /// connection accepted runs its handshakes when first read, within
    /// [`ListenOptions::handshake_timeout`].
    fn listen(
        endpoint: &Endpoint,
        options: &ListenOptions,
    ) -> impl Future<Output = io::Result<Box<dyn Listener>>> + Send;
}

/// Connects to `endpoint` over its transport, then as `connect_on`.
pub async fn connect_endpoint_on<R: Dial>(
    runtime: R,
    endpoint: &Endpoint,
    transport: &TransportOptions,
    options: ClientOptions,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    let stream = R::dial(endpoint, transport).await?;
    connect_transport_on(runtime, stream, options).await
}

/// Connects to `endpoint` over its transport and reconnects by itself as `policy` says,
/// dialing `endpoint` again through the runtime's [`Dial`] (TCP, TLS, WebSocket, Unix: the
/// same handshakes) for every reconnect; otherwise as
/// [`connect_reconnecting_on`](crate::engine::connect_reconnecting_on), which says what is
/// and is not guaranteed. Each attempt is bounded by the shorter of
/// [`TransportOptions::connect_timeout`] and [`ReconnectPolicy::connect_timeout`].
pub async fn connect_endpoint_reconnecting_on<R: Dial>(
    runtime: R,
    endpoint: &Endpoint,
    transport: &TransportOptions,
    options: ClientOptions,
    policy: ReconnectPolicy,
) -> Result<(ClientOn<R>, ClientEvents), Error> {
    let endpoint = endpoint.clone();
    let transport = transport.clone();
    let connector = bounded_connector(runtime.clone(), policy.connect_timeout, move || {
        let endpoint = endpoint.clone();
        let transport = transport.clone();
        Box::pin(async move { R::dial(&endpoint, &transport).await })
    });
    connect_connector_on(runtime, connector, options, policy).await
}

/// Whether `scheme` is compiled in for clients and listeners (its feature is on).
pub fn scheme_supported(scheme: Scheme) -> bool {
    match scheme {
        Scheme::Mqtt => true,
        Scheme::Mqtts => cfg!(feature = "engine-tls"),
        Scheme::Ws => cfg!(feature = "engine-websocket"),
        Scheme::Wss => cfg!(all(feature = "engine-tls", feature = "engine-websocket")),
        Scheme::Unix => cfg!(unix),
    }
}

/// Defines, in the invoking module, the transport entry points on the runtime `$rt` (a
/// [`Dial`](crate::engine::Dial) runtime): `connect_url`, `connect_url_with`,
/// `connect_endpoint`, their reconnecting forms `connect_url_reconnecting`,
/// `connect_url_reconnecting_with` and `connect_endpoint_reconnecting`, `listen_url` and
/// `listen_endpoint`. Each adapter invokes it beside
/// [`named_for_runtime!`](crate::named_for_runtime).
#[macro_export]
macro_rules! transports_for_runtime {
    ($rt:ty) => {
        /// Connects to the broker at `url` (`mqtt://`, `mqtts://`, `ws://`, `wss://`,
        /// `unix://`; see [`Endpoint`]($crate::Endpoint)) with default
        /// [`TransportOptions`]($crate::TransportOptions) (TLS: the platform's or Mozilla's
        /// roots, by feature), then sends the CONNECT and waits for the CONNACK. A user name
        /// and password in the URL are not added to the CONNECT: that is the caller's.
        pub async fn connect_url(
            url: &str,
            options: $crate::ClientOptions,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error> {
            connect_url_with(url, &$crate::TransportOptions::default(), options).await
        }

        /// [`connect_url`] with [`TransportOptions`]($crate::TransportOptions) (TLS roots,
        /// client certificate, ALPN, WebSocket limits, timeout).
        pub async fn connect_url_with(
            url: &str,
            transport: &$crate::TransportOptions,
            options: $crate::ClientOptions,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error> {
            let endpoint = $crate::Endpoint::parse(url).map_err(::std::io::Error::from)?;
            connect_endpoint(&endpoint, transport, options).await
        }

        /// Connects to `endpoint` over its transport (the typed form of [`connect_url`]).
        pub async fn connect_endpoint(
            endpoint: &$crate::Endpoint,
            transport: &$crate::TransportOptions,
            options: $crate::ClientOptions,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error> {
            $crate::engine::connect_endpoint_on(
                <$rt as ::std::default::Default>::default(),
                endpoint,
                transport,
                options,
            )
            .await
        }

        /// Connects to the broker at `url` as [`connect_url`] does and reconnects by itself
        /// as `policy` says, dialing the URL again (same transport, same handshakes) for
        /// every reconnect
        /// ([`connect_endpoint_reconnecting_on`]($crate::engine::connect_endpoint_reconnecting_on);
        /// [`connect_reconnecting_on`]($crate::engine::connect_reconnecting_on) says what is
        /// guaranteed).
        pub async fn connect_url_reconnecting(
            url: &str,
            options: $crate::ClientOptions,
            policy: $crate::ReconnectPolicy,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error> {
            connect_url_reconnecting_with(
                url,
                &$crate::TransportOptions::default(),
                options,
                policy,
            )
            .await
        }

        /// [`connect_url_reconnecting`] with [`TransportOptions`]($crate::TransportOptions).
        pub async fn connect_url_reconnecting_with(
            url: &str,
            transport: &$crate::TransportOptions,
            options: $crate::ClientOptions,
            policy: $crate::ReconnectPolicy,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error> {
            let endpoint = $crate::Endpoint::parse(url).map_err(::std::io::Error::from)?;
            connect_endpoint_reconnecting(&endpoint, transport, options, policy).await
        }

        /// The typed form of [`connect_url_reconnecting_with`].
        pub async fn connect_endpoint_reconnecting(
            endpoint: &$crate::Endpoint,
            transport: &$crate::TransportOptions,
            options: $crate::ClientOptions,
            policy: $crate::ReconnectPolicy,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error> {
            $crate::engine::connect_endpoint_reconnecting_on(
                <$rt as ::std::default::Default>::default(),
                endpoint,
                transport,
                options,
                policy,
            )
            .await
        }

        /// Binds a listener for `url` (`mqtt://127.0.0.1:1883`, `mqtts://0.0.0.0:8883`,
        /// `ws://127.0.0.1:8080/mqtt`, `wss://...`, `unix:///run/mqtt.sock`) for
        /// `BrokerServer::with_listener` or `Server::with_listener`; several at once with
        /// [`Listeners`]($crate::engine::Listeners).
        pub async fn listen_url(
            url: &str,
            options: &$crate::ListenOptions,
        ) -> ::std::io::Result<::std::boxed::Box<dyn $crate::engine::Listener>> {
            let endpoint = $crate::Endpoint::parse(url)?;
            listen_endpoint(&endpoint, options).await
        }

        /// Binds a listener for `endpoint` (the typed form of [`listen_url`]).
        pub async fn listen_endpoint(
            endpoint: &$crate::Endpoint,
            options: &$crate::ListenOptions,
        ) -> ::std::io::Result<::std::boxed::Box<dyn $crate::engine::Listener>> {
            <$rt as $crate::engine::Dial>::listen(endpoint, options).await
        }
    };
}
