//! The guard that authenticates every call before it reaches a service.
//!
//! It sits in front of the router, so no RPC can be added without it; only the
//! health and reflection services are public.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::DatabaseConnection;

use super::guard::Guard;
use super::keys::{hash_secret, looks_like_secret};
use super::{Principal, RequestContext, Role};
use crate::audit;
use crate::error::Error;
use crate::identity::directory;
use crate::identity::domain::ApiKey;

use crate::proto::ReadOnlyMethods;

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
                let span = tracing::info_span!(target: crate::telemetry::TARGET, "db.find_key");
                let lookup = directory::find_key_holder_by_hash(&self.db, &hash);
                let (key, user_role) = tracing::Instrument::instrument(lookup, span)
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

/// The [`Guard`] that authenticates every call but health and reflection:
/// it puts the caller's [`Principal`] into the request, and after the call
/// audits a refusal and flags a successful mutating call that recorded no
/// audit event (a write path that bypassed the audited transaction).
///
/// Whether a call mutates comes from its contract: every RPC not marked
/// `idempotency_level = NO_SIDE_EFFECTS` in its proto ([`ReadOnlyMethods`]).
#[derive(Clone)]
pub struct Authentication {
    authenticator: Authenticator,
    read_only: Arc<ReadOnlyMethods>,
}

impl Authentication {
    pub fn new(authenticator: Authenticator, read_only: ReadOnlyMethods) -> Self {
        Self {
            authenticator,
            read_only: Arc::new(read_only),
        }
    }

    /// Methods that change something: every one not marked read-only.
    pub fn is_mutating(&self, path: &str) -> bool {
        !self.read_only.contains(path)
    }

    /// Audits a refused call; flags a successful mutating call that recorded
    /// no audit event.
    async fn after_call(&self, principal: &Principal, status: Option<tonic::Code>) {
        let db = &self.authenticator.db;
        match status {
            Some(tonic::Code::PermissionDenied) => {
                if let Err(error) =
                    audit::record_denied(db, principal, audit::Outcome::PermissionDenied).await
                {
                    tracing::warn!(%error, "could not audit a denied call");
                }
            }
            None if self.is_mutating(&principal.context.method)
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
                let raised = crate::compliance::alerts::raise(
                    db,
                    crate::compliance::alerts::Severity::Critical,
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

/// Where the call came from, for the audit trail.
fn request_context(request: &http::request::Parts) -> RequestContext {
    RequestContext {
        method: request.uri.path().to_owned(),
        peer: request
            .extensions
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|address| address.to_string())
            .unwrap_or_default(),
        user_agent: request
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        audited: Default::default(),
        // The access layer's, when it is in front (it is when serving).
        note: request
            .extensions
            .get::<Arc<crate::access::CallNote>>()
            .cloned()
            .unwrap_or_default(),
    }
}

impl Guard for Authentication {
    /// The caller; `None` for the public services.
    type Pass = Option<Principal>;

    async fn check(
        &self,
        request: &mut http::request::Parts,
    ) -> Result<Option<Principal>, tonic::Status> {
        if is_public(request.uri.path()) {
            return Ok(None);
        }
        let context = request_context(request);
        let header = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let principal = self.authenticator.authenticate(header, context).await?;
        principal.context.note.set_key_id(principal.api_key_id);
        request.extensions.insert(principal.clone());
        Ok(Some(principal))
    }

    async fn after(&self, principal: Option<Principal>, header_status: Option<tonic::Code>) {
        if let Some(principal) = principal {
            self.after_call(&principal, header_status).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::GuardLayer;
    use crate::compliance::entities::alert;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tower::{Layer, Service, ServiceExt};

    /// A migrated SQLite database in a fresh file, and the secret of its
    /// admin's key.
    async fn database_with_an_admin() -> (DatabaseConnection, String, std::path::PathBuf) {
        use migration::MigratorTrait;
        let file = std::env::temp_dir().join(format!("azora_unit_{}.db", uuid::Uuid::new_v4()));
        let settings =
            crate::config::Settings::with_database(format!("sqlite://{}?mode=rwc", file.display()));
        let db = crate::db::connect(&settings).await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        let (_, issued) = crate::identity::Identity::new(db.clone())
            .bootstrap_admin("admin", None)
            .await
            .unwrap();
        (db, issued.secret, file)
    }

    /// An inner service that succeeds without recording any audit event.
    fn succeeds_unaudited() -> impl Service<
        http::Request<()>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(|_: http::Request<()>| async {
            Ok(http::Response::new(tonic::body::Body::empty()))
        })
    }

    fn call_to(method: &str, secret: Option<&str>) -> http::Request<()> {
        let mut request =
            http::Request::builder().uri(format!("/example.v1.ExampleService/{method}"));
        if let Some(secret) = secret {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {secret}"));
        }
        request.body(()).unwrap()
    }

    #[tokio::test]
    async fn the_unaudited_mutation_alert_follows_the_descriptors_not_the_method_name() {
        let (db, secret, file) = database_with_an_admin().await;
        let read_only =
            ReadOnlyMethods::from_descriptors(&crate::proto::testing::pool_with_misleading_names());
        let guard = Authentication::new(
            Authenticator::new(db.clone(), KeyCache::new(Duration::ZERO)),
            read_only,
        );
        let mut service = GuardLayer::new(guard).layer(succeeds_unaudited());

        let refused = service
            .ready()
            .await
            .unwrap()
            .call(call_to("CheckThing", None))
            .await
            .unwrap();
        assert_eq!(
            refused.headers()["grpc-status"],
            (tonic::Code::Unauthenticated as i32).to_string()
        );
        // Marked NO_SIDE_EFFECTS though named like a write; not marked
        // though named like a read.
        for method in ["CheckThing", "GetThing"] {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(call_to(method, Some(&secret)))
                .await
                .unwrap();
            assert!(response.headers().get("grpc-status").is_none(), "{method}");
        }

        let alerts = alert::Entity::find()
            .filter(alert::Column::Source.eq("audit"))
            .all(&db)
            .await
            .unwrap();
        let messages: Vec<_> = alerts.iter().map(|alert| alert.message.as_str()).collect();
        assert_eq!(
            messages,
            ["/example.v1.ExampleService/GetThing succeeded without an audit event"]
        );
        db.close().await.ok();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }

    #[test]
    fn the_server_takes_its_read_only_methods_from_the_proto_options() {
        let read_only = ReadOnlyMethods::of_this_crate();
        assert!(read_only.contains("/azora.identity.v1.IdentityService/GetUser"));
        assert!(read_only.contains("/azora.compliance.v1.ComplianceService/VerifyAuditLog"));
        assert!(!read_only.contains("/azora.treasury.v1.TreasuryService/Transfer"));
        assert!(!read_only.contains("/azora.compliance.v1.ComplianceService/AcknowledgeAlert"));
    }
}
