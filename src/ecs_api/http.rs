//! The ECS API's HTTP face: `POST /` with `X-Amz-Target: AmazonEC2ContainerServiceV20141113.Op`
//! and a JSON body, signed with SigV4 by one of the operator's keys; the answer in ECS's
//! shape, or its error. The operations run off the async workers (the engine's calls block).

use std::collections::BTreeMap;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::Value;
use tokio::net::TcpListener;

use super::arn::Arns;
use super::error::ApiError;
use super::keys::{Access, Key};
use super::ops::{dispatch, Context};
use super::sigv4;
use crate::engine::Engine;

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// ECS's own bound on a request (a task definition is the largest).
const MAX_BODY: usize = 1 << 20;
/// How long a signed request's body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What every request is served with.
pub struct Api {
    pub engine: Engine,
    pub arns: Arns,
    pub keys: BTreeMap<String, Key>,
    /// Seconds a request's X-Amz-Date may differ from berthd's clock (ECS's: 5 minutes).
    pub skew_secs: i64,
}

fn reply(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    if let Ok(id) = hyper::header::HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-requestid", id);
    }
    resp
}

fn request_id() -> String {
    let n = crate::clock::now_us();
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        n >> 32,
        n & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

fn error(e: &ApiError) -> Response<Full<Bytes>> {
    reply(e.status(), &e.body())
}

/// The request's claimed signer, known before its body is read: a caller without a key
/// holds no connection while it trickles a body in.
fn signer<'a>(
    api: &'a Api,
    headers: &[(String, String)],
) -> Result<(sigv4::Authorization, &'a Key), ApiError> {
    let auth = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.as_str())
        .ok_or(sigv4::SigError::Missing)
        .and_then(sigv4::parse_authorization)
        .map_err(|e| ApiError::new(e.exception(), e.to_string()))?;
    let key = api.keys.get(&auth.access_key).ok_or_else(|| {
        let e = sigv4::SigError::UnknownKey;
        ApiError::new(e.exception(), e.to_string())
    })?;
    Ok((auth, key))
}

/// Whether the signature covers this request and its body; the key's access when it does.
fn authenticate(
    api: &Api,
    (auth, key): (sigv4::Authorization, &Key),
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Access, ApiError> {
    let request = sigv4::Request {
        method: "POST",
        path: "/",
        query: "",
        headers,
        body,
    };
    let now = (crate::clock::now_us() / 1_000_000) as i64;
    sigv4::verify(&request, &auth, &key.secret, now, api.skew_secs)
        .map_err(|e| ApiError::new(e.exception(), e.to_string()))?;
    Ok(key.access)
}

/// The body, at most [`MAX_BODY`] bytes within [`BODY_TIMEOUT`].
async fn read_body(body: Incoming) -> Result<Bytes, ApiError> {
    let collect = Limited::new(body, MAX_BODY).collect();
    match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(ApiError::new(
            "SerializationException",
            format!("the request body is over {MAX_BODY} bytes or was cut off"),
        )),
        Err(_) => Err(ApiError::new(
            "SerializationException",
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn respond(api: Arc<Api>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST || req.uri().path() != "/" {
        return error(&ApiError::new(
            "UnknownOperationException",
            "berth's ECS API answers POST / only",
        ));
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let access = match signer(&api, &headers) {
        Ok(signer) => match read_body(req.into_body()).await {
            Ok(body) => authenticate(&api, signer, &headers, &body).map(|a| (a, body)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let (access, body) = match access {
        Ok(a) => a,
        Err(e) => return error(&e),
    };
    let Some(op) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-target"))
        .and_then(|(_, v)| v.strip_prefix(TARGET_PREFIX))
        .map(String::from)
    else {
        return error(&ApiError::new(
            "UnknownOperationException",
            format!("X-Amz-Target must be {TARGET_PREFIX}<Operation>"),
        ));
    };
    let raw: &[u8] = if body.is_empty() { b"{}" } else { &body };
    let json: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => {
            return error(&ApiError::new(
                "SerializationException",
                format!("the body is not JSON: {e}"),
            ))
        }
    };
    let answer = tokio::task::spawn_blocking(move || {
        let cx = Context {
            engine: &api.engine,
            arns: &api.arns,
        };
        dispatch(&cx, &op, access, &json)
    })
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::new(
            "ServerException",
            "the operation failed inside berthd",
        ))
    });
    match answer {
        Ok(v) => reply(200, &v),
        Err(e) => error(&e),
    }
}

/// Serves the API until the task is dropped.
pub async fn serve(listener: TcpListener, api: Api) {
    let api = Arc::new(api);
    crate::httpd::serve(listener, "ecs api", move |req| respond(api.clone(), req)).await
}
