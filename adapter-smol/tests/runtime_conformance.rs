//! The shared suites (mqtt-streaming-tokio's `tests/conformance/mod.rs` and, on Unix,
//! `tests/parking/mod.rs`) on smol.

use mqtt_streaming_smol as adapter;

mod rt {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
        smol::block_on(future)
    }

    pub(crate) fn spawn<T: Send + 'static>(
        future: impl Future<Output = T> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = T> + Send>> {
        Box::pin(smol::spawn(future))
    }

    pub(crate) async fn sleep(duration: Duration) {
        smol::Timer::after(duration).await;
    }

    /// A Unix socket pair: a transport that cannot park (the parking suite).
    #[cfg(unix)]
    pub(crate) fn pair() -> (smol::net::unix::UnixStream, smol::net::unix::UnixStream) {
        smol::net::unix::UnixStream::pair().unwrap()
    }
}

#[path = "../../adapter-tokio/tests/conformance/mod.rs"]
mod conformance;

#[cfg(unix)]
#[path = "../../adapter-tokio/tests/parking/mod.rs"]
mod parking;
