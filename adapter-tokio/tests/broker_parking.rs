//! The parking suite (`parking/mod.rs`) on tokio (multi-threaded runtime): idle broker
//! connections parked without a task (Unix).

#![cfg(unix)]

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

    /// An in-memory pipe: a transport that cannot park.
    pub(crate) fn pair() -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
        tokio::io::duplex(64 * 1024)
    }
}

#[path = "parking/mod.rs"]
mod parking;
