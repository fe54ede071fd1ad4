//! The shared suites (mqtt-streaming-tokio's `tests/conformance/mod.rs` and, on Unix,
//! `tests/parking/mod.rs`) on async-std.

use mqtt_streaming_async_std as adapter;

mod rt {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
        async_std::task::block_on(future)
    }

    pub(crate) fn spawn<T: Send + 'static>(
        future: impl Future<Output = T> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = T> + Send>> {
        Box::pin(async_std::task::spawn(future))
    }

    pub(crate) async fn sleep(duration: Duration) {
        async_std::task::sleep(duration).await;
    }

    /// A Unix socket pair: a transport that cannot park (the parking suite).
    #[cfg(unix)]
    pub(crate) fn pair() -> (
        async_std::os::unix::net::UnixStream,
        async_std::os::unix::net::UnixStream,
    ) {
        async_std::os::unix::net::UnixStream::pair().unwrap()
    }
}

#[path = "../../adapter-tokio/tests/conformance/mod.rs"]
mod conformance;

#[cfg(unix)]
#[path = "../../adapter-tokio/tests/parking/mod.rs"]
mod parking;
