//! The HTTP endpoint: `/metrics` for Prometheus and `/healthz` for the
//! kubelet's probes. Anything else gets 404, other methods 405; requests
//! hyper cannot parse get 400 from hyper itself.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{net::TcpListener, sync::Semaphore};
use tracing::{debug, warn};

use crate::{engine::SharedSnapshot, exposition};

/// Connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent its request headers by then is dropped.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Server {
    pub registry: Registry,
    pub snapshot: SharedSnapshot,
    /// `/healthz` fails when the engine has not ticked for this long.
    pub stale_after: Duration,
    /// Length of the last `/metrics` body. The next one is about as long,
    /// so its buffer is allocated at that size once instead of growing
    /// by doubling, which left a trail of freed buffers in the heap.
    pub last_body_len: AtomicUsize,
}

/// Serves until the listener fails; the caller cancels it on shutdown.
pub async fn serve(listener: TcpListener, server: Server) -> anyhow::Result<()> {
    let server = Arc::new(server);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = permits.clone().acquire_owned().await?;
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accepting a metrics connection failed");
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(route(&server, &request)) }
            });
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = result {
                debug!(%peer, %error, "metrics connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Address the agent listens on when none is configured.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9464";

pub fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    text.parse().map_err(|error| {
        anyhow::anyhow!("invalid listen address {text:?}: {error}; expected HOST:PORT such as 127.0.0.1:9464")
    })
}

fn route(server: &Server, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if path != "/metrics" && path != "/healthz" {
        return plain(StatusCode::NOT_FOUND, "not found; try /metrics or /healthz\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD are allowed\n");
    }
    match path {
        "/metrics" => {
            let accept = request.headers().get(header::ACCEPT).and_then(|value| value.to_str().ok());
            metrics(server, exposition::wants_openmetrics(accept))
        }
        _ => health(server),
    }
}

fn metrics(server: &Server, openmetrics: bool) -> Response<Full<Bytes>> {
    let expected_len = server.last_body_len.load(Ordering::Relaxed);
    let mut body = String::with_capacity((expected_len + expected_len / 8).max(64 * 1024));
    if let Err(error) = encode(&mut body, &server.registry) {
        warn!(%error, "encoding /metrics failed");
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed\n");
    }
    server.last_body_len.store(body.len(), Ordering::Relaxed);
    let (body, content_type) = if openmetrics {
        (body, exposition::OPENMETRICS_CONTENT_TYPE)
    } else {
        (exposition::to_prometheus_text(&body), exposition::PROMETHEUS_TEXT_CONTENT_TYPE)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}

fn health(server: &Server) -> Response<Full<Bytes>> {
    let taken_at = server.snapshot.read().ok().and_then(|snapshot| snapshot.taken_at);
    match taken_at {
        Some(at) if Instant::now().duration_since(at) <= server.stale_after => plain(StatusCode::OK, "ok\n"),
        Some(at) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("stale: last collection {:.1} s ago\n", at.elapsed().as_secs_f64()),
        ),
        None => plain(StatusCode::SERVICE_UNAVAILABLE, "starting: no collection yet\n"),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
