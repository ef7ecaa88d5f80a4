//! Logs (text or JSON) and, optionally, command spans exported over OTLP/HTTP.
//! Spans are off by default; when on, a sampled fraction of commands get a
//! `command` span (tenant, command, keyspace) that ends when the reply
//! arrives. Sampling happens before the span is made, so unsampled commands
//! cost one random number.

use crate::error::{Error, Kind};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The fraction of commands traced, as f64 bits; 0 when OTLP export is off.
static SAMPLE_RATIO: AtomicU64 = AtomicU64::new(0);

/// True for the commands to trace (always false when export is off).
pub fn sample() -> bool {
    let ratio = f64::from_bits(SAMPLE_RATIO.load(Ordering::Relaxed));
    ratio > 0.0 && fastrand::f64() < ratio
}

#[derive(Debug, Clone)]
pub struct Otlp {
    /// e.g. `http://collector:4318/v1/traces`
    pub endpoint: String,
    /// Fraction of commands traced, 0 to 1.
    pub sample_ratio: f64,
}

/// Keeps the exporter alive; flushes what is buffered when dropped.
pub struct TracingGuard(Option<SdkTracerProvider>);

impl TracingGuard {
    /// Exports the spans buffered so far (blocks until the export is done).
    pub fn flush(&self) {
        if let Some(p) = &self.0 {
            let _ = p.force_flush();
        }
    }
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: logs on stderr (filtered by `TENANTRY_LOG`,
/// default `info`), as JSON if `json`, and the OTLP span exporter if given.
pub fn init(json: bool, otlp: Option<Otlp>) -> Result<TracingGuard, Error> {
    let filter = EnvFilter::try_from_env("TENANTRY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json { fmt.json().boxed() } else { fmt.boxed() };
    let mut provider = None;
    let otel = match otlp {
        Some(o) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(&o.endpoint)
                .build()
                .map_err(|e| Error::caused(Kind::Setup, format!("OTLP exporter for {}", o.endpoint), e))?;
            let p = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(opentelemetry_sdk::Resource::builder().with_service_name("tenantry").build())
                .build();
            let tracer = p.tracer("tenantry");
            provider = Some(p);
            SAMPLE_RATIO.store(o.sample_ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
            // Only the command spans go to OTLP, whatever the log filter says.
            let only_commands = tracing_subscriber::filter::filter_fn(|m| m.target() == COMMAND_TARGET);
            Some(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_commands))
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init()
        .map_err(|e| Error::new(Kind::Setup, format!("tracing already set up: {e}")))?;
    Ok(TracingGuard(provider))
}

/// The target of command spans.
pub const COMMAND_TARGET: &str = "tenantry::command";
