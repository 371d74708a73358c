//! Treasury: the AZR ledger.
//!
//! Invariants (database-enforced where a constraint can say it, and proven by
//! the tests): the 1:1 peg on every transaction; a mint's allocation sums to
//! its amount; entries balance by construction (each moves a positive amount
//! from one account to another); no holding account below zero; total supply
//! = minted - burned + net bridged = the sum of all holding balances; each
//! pending transaction resolves at most once; one effect per request id.

pub mod domain;
pub mod entities;
pub mod ledger;
pub mod operations;
pub mod reports;
mod store;
mod transport;

pub use operations::Treasury;
pub use transport::TreasuryApi;
