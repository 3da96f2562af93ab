//! The HTTP/1.1 serving loop berthd's endpoints share (`/metrics`, the ECS API), on hyper.
//! Anyone who reaches a port may connect, so each client is bounded: its headers must come
//! within [`HEADER_TIMEOUT`], a connection lasts at most [`CONNECTION_LIFE`], at most
//! [`MAX_CONNECTIONS`] are served at once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A client that has not sent its request's headers by then is disconnected.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Kept-alive connections are closed after this; a client simply connects again.
pub const CONNECTION_LIFE: Duration = Duration::from_secs(120);
/// Connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves `handle` until the task is dropped; each connection on its own task.
pub async fn serve<H, F>(listener: TcpListener, name: &'static str, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "{name}: accept failed");
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFE, conn).await {
                Ok(Err(e)) => tracing::debug!(error = %e, "{name}: connection ended with an error"),
                Ok(Ok(())) => {}
                Err(_) => tracing::debug!("{name}: connection closed at the end of its life"),
            }
        });
    }
}
