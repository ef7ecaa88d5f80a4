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
        (&Method::GET, "/ready") if status.draining.load(std::sync::atomic::Ordering::Relaxed) => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n".to_string())
        }
        (&Method::POST, "/drain") => {
            status.drain_requested.notify_one();
            (StatusCode::ACCEPTED, "draining\n".to_string())
        }
        (&Method::GET, "/ready") => {
            let rt = runtime.load();
            let down: Vec<String> = rt
                .backends
                .iter()
                .filter(|(_, b)| !b.is_up())
                .map(|(n, b)| match b.problem() {
                    Some(why) => format!("{n} ({why})"),
                    None => n.to_string(),
                })
                .collect();
            let affected: Vec<&str> =
                rt.tenants.values().filter(|t| !t.backend.is_up()).map(|t| t.id.as_str()).collect();
            if down.is_empty() {
                let mut body = "ready\n".to_string();
                for note in status.notes.all() {
                    body.push_str(&format!("warning: {note}\n"));
                }
                (StatusCode::OK, body)
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "not ready: backends down: {}; tenants affected: {}\n",
                        down.join(", "),
                        affected.join(", ")
                    ),
                )
            }
        }
        (&Method::GET, "/config") => (StatusCode::OK, status.config_json()),
        (&Method::GET, "/tenants") => (StatusCode::OK, tenants_json(&runtime.load())),
        (&Method::GET, "/backends") => {
            (StatusCode::OK, serde_json::to_string_pretty(&status.notes.nodes()).unwrap_or_default() + "\n")
        }
        (&Method::GET, "/") => (StatusCode::OK, STATUS_PAGE.to_string()),
        (&Method::GET, "/metrics") => {
            let rt = runtime.load();
            status.families.hot_keys.clear();
            for t in rt.tenants.values() {
                t.metrics.publish_hot_keys();
            }
            (StatusCode::OK, status.metrics_text())
        }
        (&Method::GET, "/hotkeys") => hot_keys(&runtime.load(), req.uri().query().unwrap_or("")),
        (&Method::GET, _) => {
            (StatusCode::NOT_FOUND, "not found: try /live, /ready, /config, /tenants or /metrics\n".to_string())
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, "GET only (and POST /drain)\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    if body_is_json(req.uri().path()) {
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    }
    *resp.status_mut() = status;
    Ok(resp)
}

fn body_is_json(path: &str) -> bool {
    matches!(path, "/config" | "/tenants" | "/hotkeys" | "/backends")
}

/// The status page: the same figures as `/tenants` and `/backends`, at a glance.
const STATUS_PAGE: &str = include_str!("status.html");

/// `/hotkeys?tenant=NAME`: the tenant's hottest keys, hottest first.
fn hot_keys(rt: &Runtime, query: &str) -> (StatusCode, String) {
    let tenant = query.split('&').find_map(|kv| kv.strip_prefix("tenant="));
    let Some(t) = tenant.and_then(|name| rt.tenants.values().find(|t| t.id.as_str() == name)) else {
        return (StatusCode::NOT_FOUND, "{\"error\": \"give ?tenant=NAME of a configured tenant\"}\n".to_string());
    };
    let keys: Vec<serde_json::Value> = t
        .metrics
        .hot_keys()
        .into_iter()
        .map(|(key, count)| serde_json::json!({ "key": String::from_utf8_lossy(&key), "count": count }))
        .collect();
    (
        StatusCode::OK,
        serde_json::to_string_pretty(&serde_json::json!({ "tenant": t.id.as_str(), "hot_keys": keys }))
            .unwrap_or_default()
            + "\n",
    )
}

/// Each tenant's backend, namespace and live figures.
fn tenants_json(rt: &Runtime) -> String {
    let mut tenants: Vec<serde_json::Value> = rt
        .tenants
        .values()
        .map(|t| {
            let totals = t.metrics.totals();
            let reads = totals.hits + totals.misses;
            serde_json::json!({
                "tenant": t.id.as_str(),
                "backend": t.config.backend.as_str(),
                "backend_up": t.backend.is_up(),
                "backend_problem": t.backend.problem(),
                "namespace": t.namespace.to_string(),
                "config_version": rt.version,
                "connections": t.metrics.connections.get(),
                "hits": totals.hits,
                "misses": totals.misses,
                "hit_rate": if reads > 0 { Some(totals.hits as f64 / reads as f64) } else { None },
                "latency_p50_seconds": t.metrics.latency.quantile(0.5),
                "latency_p99_seconds": t.metrics.latency.quantile(0.99),
                "hot_keys": t.metrics.hot_keys().into_iter().take(3)
                    .map(|(k, c)| serde_json::json!({ "key": String::from_utf8_lossy(&k), "count": c }))
                    .collect::<Vec<_>>(),
                "evictions": totals.evictions,
                "quota_evictions": totals.quota_evictions,
                "expirations": totals.expirations,
                "memory": match t.config.memory {
                    Some(m) => serde_json::json!({
                        "used_bytes": t.quota.used(),
                        "quota_bytes": m.bytes,
                        "eviction": m.eviction.name(),
                        "refused_writes": t.metrics.quota_refused.get(),
                    }),
                    // Measured for every tenant (quotas.measure_all); null until it is.
                    None => serde_json::json!({ "used_bytes": t.quota.measured_once().then(|| t.quota.used()) }),
                },
                "received_bytes": t.metrics.bytes_in.get(),
                "sent_bytes": t.metrics.bytes_out.get(),
                "coalesce": t.flights.is_some(),
                "near_cache": t.near_cache.as_ref().map(|c| {
                    let (entries, bytes) = c.size();
                    serde_json::json!({ "entries": entries, "bytes": bytes, "serving": c.is_serving() })
                }),
                "coalesced": t.metrics.coalesced.get(),
                "migration": t.migration.as_ref().map(|m| m.json()),
            })
        })
        .collect();
    tenants.sort_by(|a, b| a["tenant"].as_str().cmp(&b["tenant"].as_str()));
    serde_json::to_string_pretty(&tenants).unwrap_or_default() + "\n"
}
