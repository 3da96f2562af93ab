//! A minimal HTTP/1.1 server for `/metrics` on hyper; everything else is 404. Anyone who
//! reaches the port may connect, so each client is bounded: its headers must come within
//! [`HEADER_TIMEOUT`], a connection lasts at most [`CONNECTION_LIFE`], at most
//! [`MAX_CONNECTIONS`] are served at once, and the rendering runs off the async workers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Metrics;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// A client that has not sent its request's headers by then is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Kept-alive connections are closed after this; a scraper simply connects again.
const CONNECTION_LIFE: Duration = Duration::from_secs(120);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;

async fn respond(metrics: Metrics, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            // Reading every task's cgroups is blocking work.
            let body = tokio::task::spawn_blocking(move || metrics.render())
                .await
                .unwrap_or_else(|_| b"# rendering failed\n".to_vec());
            (StatusCode::OK, CONTENT_TYPE, body)
        }
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            b"not found; try /metrics\n".to_vec(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Serves until the task is dropped; each connection on its own task.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(metrics, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFE, conn).await {
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "metrics: connection ended with an error")
                }
                Ok(Ok(())) => {}
                Err(_) => tracing::debug!("metrics: connection closed at the end of its life"),
            }
        });
    }
}
