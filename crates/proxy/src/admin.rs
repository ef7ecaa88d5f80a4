//! The admin HTTP server: `/live` (the process serves), `/ready` (every
//! backend has a live connection), `/config` (the active config's version,
//! the last reload error, settings waiting for a restart, namespace
//! cleanups) and `/metrics` (Prometheus text).

use crate::runtime::Runtime;
use crate::status::Status;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub async fn serve(
    listener: TcpListener,
    runtime: Arc<ArcSwap<Runtime>>,
    status: Arc<Status>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let (runtime, status) = (runtime.clone(), status.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| respond(req, runtime.clone(), status.clone()));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    runtime: Arc<ArcSwap<Runtime>>,
    status: Arc<Status>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/live") => (StatusCode::OK, "live\n".to_string()),
        (&Method::GET, "/ready") => {
            let rt = runtime.load();
            let down: Vec<String> =
                rt.backends.iter().filter(|(_, b)| !b.is_up()).map(|(n, _)| n.to_string()).collect();
            if down.is_empty() {
                (StatusCode::OK, "ready\n".to_string())
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: backends down: {}\n", down.join(", ")))
            }
        }
        (&Method::GET, "/config") => (StatusCode::OK, status.config_json()),
        (&Method::GET, "/metrics") => (StatusCode::OK, status.metrics_text()),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "not found: try /live, /ready, /config or /metrics\n".to_string()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    Ok(resp)
}
