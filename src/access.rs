//! One access line per call, written when the call has ended: method, gRPC
//! status code, duration, the caller's key id (never the key), the peer,
//! the W3C trace id the caller sent, and the request id of a retry-safe
//! call.
//!
//! The layer is the outermost, so it sees every call, the refused ones
//! included. What is learnt inside — which key authenticated, which request
//! id the call carried — is written by the guard and by the audit trail
//! into the call's [`CallNote`], which the layer puts into the request's
//! extensions and reads at the end. The line is written when the response
//! body ends, where a successful call's status travels (in the trailers),
//! so a server stream's line comes when it closes, with its whole duration;
//! a body dropped before it ended is a call the client gave up on
//! (CANCELLED).
//!
//! The lines are events of target `azora::access` at INFO, so
//! `AZORA_LOG=info,azora::access=off` turns them off. The same end of the
//! call is what the RPC metrics record ([`RpcMetrics`]).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Frame, SizeHint};
use tower::{Layer, Service};
use uuid::Uuid;

use crate::metrics::{ActiveCall, RpcMetrics};

/// What the call's handlers learnt about it, for its access line.
#[derive(Debug, Default)]
pub struct CallNote {
    key_id: OnceLock<Uuid>,
    request_id: OnceLock<String>,
}

impl CallNote {
    /// The key that authenticated the call.
    pub fn set_key_id(&self, key_id: Uuid) {
        let _ = self.key_id.set(key_id);
    }

    /// The request id the call was made under; the first one noted stays.
    pub fn set_request_id(&self, request_id: &str) {
        if !request_id.is_empty() {
            let _ = self.request_id.set(request_id.to_owned());
        }
    }
}

#[derive(Clone)]
pub struct AccessLogLayer {
    metrics: RpcMetrics,
}

impl AccessLogLayer {
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    metrics: RpcMetrics,
}

impl<S, RequestBody> Service<http::Request<RequestBody>> for AccessLog<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        let note = Arc::new(CallNote::default());
        request.extensions_mut().insert(note.clone());
        let method = request.uri().path().to_owned();
        let span = crate::telemetry::rpc_span(&method, request.headers());
        let line = Line {
            span: span.clone(),
            started: Instant::now(),
            active: self.metrics.started(&method),
            metrics: self.metrics.clone(),
            method,
            peer: request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr()),
            trace_id: trace_id(request.headers()),
            note,
            header_code: None,
        };
        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(tracing::Instrument::instrument(
            async move {
                let response = response.await?;
                let mut line = line;
                line.header_code = grpc_status(response.headers());
                Ok(response.map(|body| {
                    tonic::body::Body::new(LoggedBody {
                        inner: body,
                        line: Some(line),
                    })
                }))
            },
            span,
        ))
    }
}

/// The trace id of a W3C `traceparent` header
/// (`version-traceid-parentid-flags`), when it is well formed.
fn trace_id(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let well_formed = trace.len() == 32
        && trace.bytes().all(|byte| byte.is_ascii_hexdigit())
        && trace.bytes().any(|byte| byte != b'0');
    well_formed.then(|| trace.to_ascii_lowercase())
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from)
}

/// What the line says, gathered until the call ends.
struct Line {
    /// The call's trace span, closed when the line is written.
    span: tracing::Span,
    started: Instant,
    /// Counts the call as in progress until the line is written or lost.
    active: ActiveCall,
    metrics: RpcMetrics,
    method: String,
    peer: Option<std::net::SocketAddr>,
    trace_id: Option<String>,
    note: Arc<CallNote>,
    /// The status of a trailers-only response (every refusal).
    header_code: Option<tonic::Code>,
}

impl Line {
    fn write(self, code: tonic::Code) {
        let elapsed = self.started.elapsed();
        self.metrics.finished(&self.method, code, elapsed);
        crate::telemetry::record_status(&self.span, code);
        drop(self.active);
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "azora::access",
            method = %self.method,
            code = ?code,
            duration_ms = format_args!("{duration_ms:.3}"),
            key_id = self.note.key_id.get().map(tracing::field::display),
            peer = self.peer.map(tracing::field::display),
            trace_id = self.trace_id.as_deref(),
            request_id = self.note.request_id.get().map(String::as_str),
            "call"
        );
    }
}

/// The response body, writing the line when it ends or is dropped.
struct LoggedBody {
    inner: tonic::body::Body,
    line: Option<Line>,
}

impl http_body::Body for LoggedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(context);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    self.end(code);
                }
            }
            Poll::Ready(Some(Err(status))) => self.end(status.code()),
            Poll::Ready(None) => {
                let code = self
                    .line
                    .as_ref()
                    .and_then(|line| line.header_code)
                    .unwrap_or(tonic::Code::Ok);
                self.end(code);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl LoggedBody {
    fn end(&mut self, code: tonic::Code) {
        if let Some(line) = self.line.take() {
            line.write(code);
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // A trailers-only response may be dropped without being polled to
        // its end once its headers are sent; its status is known.
        let code = self
            .line
            .as_ref()
            .and_then(|line| line.header_code)
            .unwrap_or(tonic::Code::Cancelled);
        self.end(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_well_formed_traceparent_gives_a_trace_id() {
        let trace = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", value.parse().unwrap());
            trace_id(&headers)
        };
        assert_eq!(
            trace("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace("00-4bf92f3577b34da6-00f067aa0ba902b7-01"), None);
        assert_eq!(
            trace("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace("garbage"), None);
        assert_eq!(trace_id(&http::HeaderMap::new()), None);
    }
}
