//! The shared suites on tokio (multi-threaded runtime): conformance (`conformance/mod.rs`) and,
//! on Unix, the parking of idle broker connections (`parking/mod.rs`).

use mqtt_streaming_tokio as adapter;

mod rt {
    use std::future::Future;
    use std::pin::Pin;
    use std::time::Duration;

    pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    pub(crate) fn spawn<T: Send + 'static>(
        future: impl Future<Output = T> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = T> + Send>> {
        let task = tokio::spawn(future);
        Box::pin(async move { task.await.unwrap() })
    }

    pub(crate) async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    /// An in-memory pipe: a transport that cannot park (the parking suite).
    #[cfg(unix)]
    pub(crate) fn pair() -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
        tokio::io::duplex(64 * 1024)
    }
}

#[path = "conformance/mod.rs"]
mod conformance;

#[cfg(unix)]
#[path = "parking/mod.rs"]
mod parking;
