//! Authentication and authorization, shared by every service.
//!
//! The [`AuthLayer`] authenticates every call except health and reflection
//! and puts the caller's [`Principal`] into the request; handlers take it with
//! [`principal`] and operations ask it what the caller may do.

mod keys;
mod layer;

pub use keys::{generate_secret, hash_secret, secret_prefix};
pub use layer::{AuthLayer, Authenticator, KeyCache};

use uuid::Uuid;

use crate::error::Error;

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Treasurer,
    Auditor,
    Member,
    Service,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Treasurer,
        Role::Auditor,
        Role::Member,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Treasurer => "treasurer",
            Role::Auditor => "auditor",
            Role::Member => "member",
            Role::Service => "service",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }

    /// Staff roles read every user's resources; members and service keys
    /// read only their own.
    pub fn reads_everything(self) -> bool {
        matches!(self, Role::Admin | Role::Treasurer | Role::Auditor)
    }
}

/// The authenticated caller: the user, the key they used and its role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub api_key_id: Uuid,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Succeeds when the caller's role is one of `roles`.
    pub fn require_role(&self, roles: &[Role]) -> Result<(), Error> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// May the caller read resources owned by `owner`?
    pub fn can_read(&self, owner: Uuid) -> bool {
        self.role.reads_everything() || self.user_id == owner
    }

    pub fn require_read(&self, owner: Uuid) -> Result<(), Error> {
        if self.can_read(owner) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }
}

/// The caller of a request that passed the [`AuthLayer`].
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Error> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or(Error::Unauthenticated)
}
