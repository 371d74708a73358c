//! Founder compensation: what each founder is owed per month and type,
//! approved by someone other than the founder and paid from the founder pool
//! through the ledger.
//!
//! Invariants (the database holds them too): a record moves only
//! pending -> approved -> paid or pending/approved -> cancelled; at most one
//! live record per founder, month and type; a paid record names its ledger
//! transfer, written in the same database transaction, so paying twice pays
//! once; nobody approves or pays their own compensation.

pub mod domain;
pub mod entities;
pub mod operations;
mod store;
mod transport;

pub use operations::Compensations;
pub use transport::FounderCompensationApi;
