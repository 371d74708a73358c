//! Authentication and authorization, shared by every service.
//!
//! The [`Authentication`] guard authenticates every call except health and
//! reflection and puts the caller's [`Principal`] into the request; handlers
//! take it with [`principal`] and operations ask it what the caller may do.
//! It is one [`Guard`]; the rate limit and load shedding (`crate::limits`)
//! are others, all wrapped by the same [`GuardLayer`].

mod guard;
mod keys;
mod layer;

pub use guard::{Guard, GuardLayer, GuardService};
pub use keys::{generate_secret, hash_secret, secret_prefix};
pub use layer::{Authentication, Authenticator, KeyCache, is_public};

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use uuid::Uuid;

use crate::error::Error;

wire_enum!(Role as crate::proto::identity::Role, "role" {
    Admin => "admin",
    Treasurer => "treasurer",
    Auditor => "auditor",
    Member => "member",
    Service => "service",
});

/// What a key may do.
impl Role {
    /// Staff roles read every user's resources; members and service keys
    /// read only their own.
    pub fn reads_everything(self) -> bool {
        matches!(self, Role::Admin | Role::Treasurer | Role::Auditor)
    }
}

/// Where a call came from, for the audit trail.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    /// The full RPC method, e.g. `/azora.treasury.v1.TreasuryService/Transfer`.
    pub method: String,
    /// The peer's IP address and port.
    pub peer: String,
    pub user_agent: String,
    /// Audit events this call has recorded; the authentication layer flags a
    /// successful mutating call that recorded none.
    pub audited: Arc<AtomicUsize>,
    /// What the call's access line will say about it.
    pub note: Arc<crate::access::CallNote>,
}

/// The authenticated caller: the user, the key they used and its role, and
/// where the call came from.
///
/// **A key never does more than its user.** A key's role is its user's own
/// or `Service`. A service key (a machine such as a mining rig acting for its
/// user) narrows: it may do only what both the service role *and* the user's
/// current role may do ([`Principal::require_role`]), it never reads
/// everything and is never an admin, and it cannot manage identities or
/// keys. So a member's service key can mine and pay from the member's own
/// wallets, but cannot verify rewards, mint or confirm anything the member
/// could not.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: Uuid,
    pub api_key_id: Uuid,
    /// The key's role: `user_role`, or `Service`.
    pub role: Role,
    /// The user's role when the key was authenticated.
    pub user_role: Role,
    pub context: RequestContext,
}

impl Principal {
    /// The operator at the command line: audited with no user or key.
    pub fn command_line(action: &str) -> Self {
        Self {
            user_id: Uuid::nil(),
            api_key_id: Uuid::nil(),
            role: Role::Admin,
            user_role: Role::Admin,
            context: RequestContext {
                method: action.to_owned(),
                user_agent: "azora-cli".into(),
                ..Default::default()
            },
        }
    }

    /// The key's role and its user's role are both among `roles`.
    pub fn has_role(&self, roles: &[Role]) -> bool {
        roles.contains(&self.role) && roles.contains(&self.user_role)
    }

    /// A service key acting for its user.
    pub fn is_service_key(&self) -> bool {
        self.role == Role::Service
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Succeeds when the caller's role is one of `roles` — for a service
    /// key, when its user's role is one of them too.
    pub fn require_role(&self, roles: &[Role]) -> Result<(), Error> {
        if self.has_role(roles) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// May the caller read resources owned by `owner`?
    pub fn can_read(&self, owner: Uuid) -> bool {
        self.role.reads_everything() || self.user_id == owner
    }

    /// The owner a list or aggregate may be filtered to: staff see everyone's
    /// (no owner means everyone); others only their own, where no owner means
    /// "mine" and anyone else's is denied.
    pub fn visible_owner(&self, owner: Option<Uuid>) -> Result<Option<Uuid>, Error> {
        if self.role.reads_everything() {
            return Ok(owner);
        }
        match owner {
            None => Ok(Some(self.user_id)),
            Some(owner) if owner == self.user_id => Ok(Some(owner)),
            Some(_) => Err(Error::PermissionDenied),
        }
    }

    /// A looked-up resource the caller may read. Callers who may not see
    /// everything learn nothing about others' resources, not even whether
    /// an id exists: for them a missing one is PERMISSION_DENIED too; staff
    /// get `missing()`.
    pub fn readable<T>(
        &self,
        found: Option<T>,
        owner: impl FnOnce(&T) -> Uuid,
        missing: impl FnOnce() -> Error,
    ) -> Result<T, Error> {
        match found {
            Some(value) if self.can_read(owner(&value)) => Ok(value),
            None if self.role.reads_everything() => Err(missing()),
            _ => Err(Error::PermissionDenied),
        }
    }

    pub fn require_read(&self, owner: Uuid) -> Result<(), Error> {
        if self.can_read(owner) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }
}

/// The caller of a request that passed the [`Authentication`] guard.
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Error> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(Error::Unauthenticated)
}
