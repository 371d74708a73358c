//! One tower middleware for every check a call must pass before it reaches a
//! service: authentication, the per-key rate limit and load shedding are
//! each a [`Guard`], wrapped by the same [`GuardLayer`].
//!
//! A guard sees the request's head (not its body), may add to its
//! extensions (the authenticated [`Principal`](super::Principal)), and
//! either lets the call through or refuses it with a `Status` that becomes
//! the response: the inner service is then never called. What `check`
//! returns is kept until the inner service has answered and handed to
//! [`Guard::after`] (a concurrency permit is released there; the auth guard
//! audits there).

use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// A check in front of every service.
pub trait Guard: Clone + Send + Sync + 'static {
    /// What the guard keeps from [`check`](Guard::check) until the inner
    /// service has answered: a permit held for the call, the caller.
    type Pass: Send + 'static;

    /// Lets the call through, or refuses it with the status its caller gets.
    fn check(
        &self,
        request: &mut http::request::Parts,
    ) -> impl Future<Output = Result<Self::Pass, tonic::Status>> + Send;

    /// Runs once the inner service has answered (before the response body
    /// is sent), with the status the response carries in its headers: a
    /// refusal does, while a success (so far) carries it in its trailers and
    /// gives `None`. Dropping `pass` ends whatever it held.
    fn after(
        &self,
        pass: Self::Pass,
        header_status: Option<tonic::Code>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (pass, header_status);
        std::future::ready(())
    }
}

/// Wraps a service in a [`Guard`].
#[derive(Clone)]
pub struct GuardLayer<G> {
    guard: G,
}

impl<G> GuardLayer<G> {
    pub fn new(guard: G) -> Self {
        Self { guard }
    }
}

impl<G: Clone, S> Layer<S> for GuardLayer<G> {
    type Service = GuardService<G, S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            guard: self.guard.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct GuardService<G, S> {
    guard: G,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<G, S, RequestBody> Service<http::Request<RequestBody>> for GuardService<G, S>
where
    G: Guard,
    S: Service<http::Request<RequestBody>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    RequestBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        // The clone that was polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            let (mut head, body) = request.into_parts();
            let pass = match guard.check(&mut head).await {
                Ok(pass) => pass,
                Err(status) => return Ok(status.into_http()),
            };
            let response = inner.call(http::Request::from_parts(head, body)).await?;
            guard.after(pass, header_status(&response)).await;
            Ok(response)
        })
    }
}

/// The gRPC status of a response whose status travels in its headers (every
/// refusal does; a success puts it in the trailers instead).
fn header_status(response: &http::Response<tonic::body::Body>) -> Option<tonic::Code> {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from)
}
