//! The tower layer that authenticates every call before it reaches a service.
//!
//! It sits in front of the router, so no RPC can be added without it; only the
//! health and reflection services are public.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::DatabaseConnection;
use tower::{Layer, Service};

use super::keys::{hash_secret, looks_like_secret};
use super::{Principal, RequestContext, Role};
use crate::audit;
use crate::error::Error;
use crate::identity::directory;
use crate::identity::domain::ApiKey;

const PUBLIC_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Health and reflection: no credentials, no limits.
pub fn is_public(path: &str) -> bool {
    PUBLIC_PREFIXES
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// Recently seen keys, so that a busy caller does not cost a database query
/// per call. Entries live at most `ttl`; any revocation or role change made
/// through this process empties the cache at once, so on this replica a
/// revoked key stops working immediately and on other replicas within `ttl`.
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (KeyHolder, Instant)>>,
}

/// More distinct live keys than this and the cache starts over.
const KEY_CACHE_CAPACITY: usize = 100_000;

impl KeyCache {
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Forgets every key: called after anything that can invalidate one.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    fn get(&self, hash: &str) -> Option<KeyHolder> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .get(hash)
            .filter(|(_, stored)| stored.elapsed() < self.ttl)
            .map(|(key, _)| key.clone())
    }

    fn put(&self, hash: String, key: KeyHolder) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= KEY_CACHE_CAPACITY {
            entries.clear();
        }
        entries.insert(hash, (key, Instant::now()));
    }
}

/// A key and its user's role when it was looked up: a service key's
/// authority is bounded by the user's current role, not the one at issue.
#[derive(Clone)]
struct KeyHolder {
    key: ApiKey,
    user_role: Role,
}

/// Turns an `authorization: Bearer <secret>` header into a [`Principal`].
#[derive(Clone)]
pub struct Authenticator {
    db: DatabaseConnection,
    cache: Arc<KeyCache>,
}

impl Authenticator {
    pub fn new(db: DatabaseConnection, cache: Arc<KeyCache>) -> Self {
        Self { db, cache }
    }

    /// Missing, malformed, unknown, revoked and expired keys are all the same
    /// UNAUTHENTICATED; a database outage is UNAVAILABLE, not a denial.
    /// A recognised key that is revoked or expired is recorded in the audit
    /// trail before the call is refused.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        context: RequestContext,
    ) -> Result<Principal, Error> {
        let secret = header
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|secret| looks_like_secret(secret))
            .ok_or(Error::Unauthenticated)?;
        let hash = hash_secret(secret);
        let KeyHolder { key, user_role } = match self.cache.get(&hash) {
            Some(holder) => holder,
            None => {
                let (key, user_role) = directory::find_key_holder_by_hash(&self.db, &hash)
                    .await?
                    .ok_or(Error::Unauthenticated)?;
                let holder = KeyHolder { key, user_role };
                self.cache.put(hash, holder.clone());
                holder
            }
        };
        let principal = Principal {
            user_id: key.user_id,
            api_key_id: key.id,
            role: key.role,
            user_role,
            context,
        };
        // A key of a role its user no longer has (role changes revoke them,
        // this is the belt to those braces) authenticates nothing.
        let role_current = key.role == user_role || key.role == Role::Service;
        if !key.is_active(Utc::now()) || !role_current {
            if let Err(error) =
                audit::record_denied(&self.db, &principal, audit::Outcome::Unauthenticated).await
            {
                tracing::warn!(%error, "could not audit a refused key");
            }
            return Err(Error::Unauthenticated);
        }
        Ok(principal)
    }
}

/// Methods that change something: everything but reads, watches and checks.
pub fn is_mutating(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    !["Get", "List", "Watch", "Verify"]
        .iter()
        .any(|prefix| method.starts_with(prefix))
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

impl Authenticator {
    /// Audits a refused call; flags a successful mutating call that recorded
    /// no audit event (a write path that bypassed the audited transaction).
    async fn after_call(&self, principal: &Principal, status: Option<tonic::Code>) {
        match status {
            Some(tonic::Code::PermissionDenied) => {
                if let Err(error) =
                    audit::record_denied(&self.db, principal, audit::Outcome::PermissionDenied)
                        .await
                {
                    tracing::warn!(%error, "could not audit a denied call");
                }
            }
            None if is_mutating(&principal.context.method)
                && principal
                    .context
                    .audited
                    .load(std::sync::atomic::Ordering::SeqCst)
                    == 0 =>
            {
                tracing::error!(method = %principal.context.method, "a mutating call succeeded without an audit event");
                let message = format!(
                    "{} succeeded without an audit event",
                    principal.context.method
                );
                let raised = crate::compliance::store::raise_alert(
                    &self.db,
                    crate::compliance::store::Severity::Critical,
                    "audit",
                    &message,
                )
                .await;
                if let Err(error) = raised {
                    tracing::warn!(%error, "could not raise an alert");
                }
            }
            _ => {}
        }
    }
}

#[derive(Clone)]
pub struct AuthLayer {
    authenticator: Authenticator,
}

impl AuthLayer {
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthMiddleware<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthMiddleware {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthMiddleware<S> {
    inner: S,
    authenticator: Authenticator,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, RequestBody> Service<http::Request<RequestBody>> for AuthMiddleware<S>
where
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

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        // The clone that was polled ready is the one that must serve the call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let authenticator = self.authenticator.clone();
        Box::pin(async move {
            let path = request.uri().path();
            if is_public(path) {
                return inner.call(request).await;
            }
            let context = RequestContext {
                method: path.to_owned(),
                peer: request
                    .extensions()
                    .get::<tonic::transport::server::TcpConnectInfo>()
                    .and_then(|info| info.remote_addr())
                    .map(|address| address.to_string())
                    .unwrap_or_default(),
                user_agent: request
                    .headers()
                    .get(http::header::USER_AGENT)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                audited: Default::default(),
            };
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok());
            let principal = match authenticator.authenticate(header, context).await {
                Ok(principal) => principal,
                Err(error) => return Ok(tonic::Status::from(error).into_http()),
            };
            request.extensions_mut().insert(principal.clone());
            let response = inner.call(request).await?;
            authenticator
                .after_call(&principal, header_status(&response))
                .await;
            Ok(response)
        })
    }
}
