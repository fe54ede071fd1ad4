//! The smol glue (feature `smol-runtime`): [`SmolRuntime`] and the engine named for it.

/// The smol runtime: connections' drivers are spawned with `smol::spawn` (smol's global
/// executor; set `SMOL_THREADS` for more than one thread), deadlines use `async-io`'s timer and
/// the clock is [`std::time::Instant`] ([`AsyncIoTimer`](crate::AsyncIoTimer)).
#[derive(Clone, Copy, Debug, Default)]
pub struct SmolRuntime;

crate::futures_runtime! {
    runtime: SmolRuntime,
    spawn: |future| smol::spawn(future).detach(),
    listener: smol::net::TcpListener,
    stream: smol::net::TcpStream,
    addrs: smol::net::AsyncToSocketAddrs,
}

mqtt_streaming_tokio::named_for_runtime!(SmolRuntime);

mod transports {
    use super::Client;
    mqtt_streaming_tokio::transports_for_runtime!(super::SmolRuntime);
}
pub use transports::{
    connect_endpoint, connect_endpoint_reconnecting, connect_url, connect_url_reconnecting,
    connect_url_reconnecting_with, connect_url_with, listen_endpoint, listen_url,
};
