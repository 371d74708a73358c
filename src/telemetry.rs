//! Traces, exported over OTLP/gRPC when `AZORA_OTLP_ENDPOINT` is set.
//!
//! The spans are `tracing` spans of target [`TARGET`], turned into
//! OpenTelemetry spans by `tracing-opentelemetry`; the log output never
//! sees them (its filter leaves the target out), and without an endpoint
//! nothing enables the target, so [`rpc_span`] costs a disabled-callsite
//! check and nothing more.
//!
//! - `rpc` (named `service/method`, kind server): every call, from the
//!   request to the end of the response, continuing the caller's trace when
//!   it sent a W3C `traceparent`;
//! - `ledger.submit`: the call's wait for its ledger batch;
//! - `ledger.batch`: one writer transaction, a child of the first call it
//!   serves and linked to the others (a batch serves many traces);
//! - `db.*`: the statements of interest inside (the batch write, the audit
//!   events, a key lookup that missed the cache);
//! - `redis`: each Redis command, named by its operation.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of every span meant for the trace exporter.
pub const TARGET: &str = "azora::trace";

/// The exporter's provider: flushed and stopped by [`Exporter::shutdown`].
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// An OTLP/gRPC exporter to `endpoint` (e.g. `http://collector:4317`),
    /// batching spans in the background. Must be called within the Tokio
    /// runtime (the tonic client it uses lives there).
    pub fn otlp(endpoint: &str) -> anyhow::Result<Self> {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("azora")
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        Ok(Self { provider })
    }

    /// The layer that turns [`TARGET`]'s spans into exported ones; only
    /// those: filtered here, whatever the log filter says.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        use tracing_subscriber::Layer as _;
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("azora"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TARGET, tracing::Level::TRACE),
            )
    }

    /// Exports what is still buffered and stops.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("exporting the last spans: {error}");
        }
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The span of one call of `path`, continuing the trace its `traceparent`
/// header names; disabled when no exporter listens.
pub fn rpc_span(path: &str, headers: &http::HeaderMap) -> tracing::Span {
    let name = path.strip_prefix('/').unwrap_or(path);
    let (service, method) = name.split_once('/').unwrap_or((name, ""));
    let span = tracing::info_span!(
        target: TARGET,
        "rpc",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() && headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(parent);
    }
    span
}

/// Records how the call ended on its span.
pub fn record_status(span: &tracing::Span, code: tonic::Code) {
    if span.is_disabled() {
        return;
    }
    span.record("rpc.grpc.status_code", code as i64);
    // OpenTelemetry: a server span is an error only for server faults.
    let server_fault = matches!(
        code,
        tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::Unavailable
            | tonic::Code::DataLoss
    );
    if server_fault {
        span.record("otel.status_code", "ERROR");
    }
}
