//! Identity: users, wallets, KYC status, roles and API keys.
//!
//! Invariants kept here (and by the database): usernames, emails and
//! addresses are unique and canonical (lowercase); every key has a role that
//! is its user's role or `service`; there is always at least one admin once
//! the first one exists.

pub mod directory;
pub mod domain;
pub mod entities;
pub mod operations;
mod store;
mod transport;
mod validate;

pub use operations::Identity;
pub use transport::IdentityApi;
