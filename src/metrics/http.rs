//! `/metrics` over berthd's HTTP loop (`httpd`); everything else is 404. The rendering runs
//! off the async workers.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::Metrics;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    crate::httpd::serve(listener, "metrics", move |req| {
        respond(metrics.clone(), req)
    })
    .await
}
