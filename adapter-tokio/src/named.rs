//! Layer 9: the engine named for one runtime, written once for every adapter:
//! [`named_for_runtime!`](crate::named_for_runtime) defines `Client`, `Server`, `BrokerServer`,
//! `BrokerHandle`, `connect`, `connect_tcp`, `connect_reconnecting`, `connect_tcp_reconnecting`
//! and `serve_connection` on a runtime type. The tokio
//! glue above invokes it for `TokioRuntime`, `mqtt-streaming-smol` and `mqtt-streaming-async-std` for theirs,
//! so the three adapters' entry points are one piece of code. Imports nothing (its paths are
//! the engine's public ones).

/// Defines, in the invoking module, the engine's entry points and types on the runtime `$rt`
/// (a [`Runtime`](crate::engine::Runtime) + `Default`): the type aliases `Client`, `Server`,
/// `BrokerServer`, `BrokerHandle`, and the functions `connect` (any stream the runtime
/// [`Adapt`](crate::engine::Adapt)s), `connect_tcp` (any address the runtime
/// [`TcpConnect`](crate::engine::TcpConnect)s to) and `serve_connection`.
///
/// ```
/// # mod demo {
/// mqtt_streaming_tokio::named_for_runtime!(mqtt_streaming_tokio::TokioRuntime);
/// # }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! named_for_runtime {
    ($rt:ty) => {
        /// A handle to a client connection on this adapter's runtime (methods:
        /// [`ClientOn`]($crate::engine::ClientOn)).
        pub type Client = $crate::engine::ClientOn<$rt>;

        /// A listener that serves MQTT connections on this adapter's runtime: each accepted
        /// connection gets a driver and is handed to the application as a `ServerConnection`
        /// (methods: [`ServerOn`]($crate::engine::ServerOn)).
        pub type Server = $crate::engine::ServerOn<$rt>;

        /// An MQTT broker on this adapter's runtime: the `mqtt-streaming-session` broker core served
        /// over a TCP listener (optional) and any transports handed to it with
        /// `BrokerHandle::serve_transport` (methods:
        /// [`BrokerServerOn`]($crate::engine::BrokerServerOn)).
        pub type BrokerServer<H = $crate::mqtt_streaming_session::broker::AllowAll> =
            $crate::engine::BrokerServerOn<$rt, H>;

        /// A cheap, cloneable handle to a running `BrokerServer` (methods:
        /// [`BrokerHandleOn`]($crate::engine::BrokerHandleOn)).
        pub type BrokerHandle = $crate::engine::BrokerHandleOn<$rt>;

        /// Connects over `transport` (any of the runtime's streams): sends the CONNECT and
        /// waits for the CONNACK, the driver spawned on this adapter's runtime
        /// ([`connect_on`]($crate::engine::connect_on)).
        ///
        /// Fails with `Error::ConnectionRefused` when the CONNACK refuses the connection (the
        /// transport is then closed), and with `Error::Closed` or `Error::Io` when the
        /// connection ends before a CONNACK.
        ///
        /// Cancel safety: dropping the future before it resolves drops the handles, so the
        /// driver disconnects and ends.
        pub async fn connect<Io>(
            transport: Io,
            options: $crate::ClientOptions,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error>
        where
            $rt: $crate::engine::Adapt<Io>,
        {
            $crate::engine::connect_on(
                <$rt as ::std::default::Default>::default(),
                transport,
                options,
            )
            .await
        }

        /// Connects over TCP to `addr` (the runtime's own address types: `"host:port"`,
        /// `SocketAddr`, `(host, port)`...) with TCP_NODELAY set (small packets leave at once
        /// instead of waiting for Nagle's algorithm), then as [`connect`].
        ///
        /// Cancel safe in the same way as [`connect`].
        pub async fn connect_tcp<A>(
            addr: A,
            options: $crate::ClientOptions,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error>
        where
            $rt: $crate::engine::TcpConnect<A>,
        {
            $crate::engine::connect_tcp_on(
                <$rt as ::std::default::Default>::default(),
                addr,
                options,
            )
            .await
        }

        /// Connects with a transport from `connector` (called again for every reconnect) and
        /// reconnects by itself as `policy` says: backoff with jitter, the session resumed,
        /// subscriptions made again when the server lost them
        /// ([`connect_reconnecting_on`]($crate::engine::connect_reconnecting_on), which says
        /// what is guaranteed), the driver spawned on this adapter's runtime.
        pub async fn connect_reconnecting<F, Fut, Io>(
            connector: F,
            options: $crate::ClientOptions,
            policy: $crate::ReconnectPolicy,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error>
        where
            $rt: $crate::engine::Adapt<Io>,
            F: ::std::ops::Fn() -> Fut + ::std::marker::Send + ::std::marker::Sync + 'static,
            Fut: ::std::future::Future<Output = ::std::io::Result<Io>>
                + ::std::marker::Send
                + 'static,
        {
            $crate::engine::connect_reconnecting_on(
                <$rt as ::std::default::Default>::default(),
                connector,
                options,
                policy,
            )
            .await
        }

        /// [`connect_reconnecting`] over TCP to `addr` (TCP_NODELAY set), connecting again to
        /// the same address ([`connect_tcp_reconnecting_on`]($crate::engine::connect_tcp_reconnecting_on)).
        pub async fn connect_tcp_reconnecting<A>(
            addr: A,
            options: $crate::ClientOptions,
            policy: $crate::ReconnectPolicy,
        ) -> ::std::result::Result<(Client, $crate::ClientEvents), $crate::Error>
        where
            $rt: $crate::engine::TcpConnect<A>,
            A: ::std::clone::Clone + ::std::marker::Send + ::std::marker::Sync + 'static,
        {
            $crate::engine::connect_tcp_reconnecting_on(
                <$rt as ::std::default::Default>::default(),
                addr,
                options,
                policy,
            )
            .await
        }

        /// Serves one MQTT connection over `transport` (any of the runtime's streams): spawns
        /// its driver on this adapter's runtime over a fresh `ServerSession` and returns the
        /// connection's events and handle
        /// ([`serve_connection_on`]($crate::engine::serve_connection_on)). The client must
        /// send CONNECT within the configured timeout.
        pub fn serve_connection<Io>(
            transport: Io,
            options: impl ::std::convert::Into<$crate::ServerOptions>,
        ) -> $crate::ServerConnection
        where
            $rt: $crate::engine::Adapt<Io>,
        {
            $crate::engine::serve_connection_on(
                <$rt as ::std::default::Default>::default(),
                transport,
                options,
            )
        }
    };
}
