//! Mining: sessions, their streamed statistics, and the AZR their earnings
//! mint through the Treasury ledger.
//!
//! Invariants: samples are stored only for an active session of their miner,
//! and a stream's samples all or none; a session's running totals equal the
//! sums of its samples, and each of its hourly rollups the sums of that
//! hour's samples (written in the samples' transaction; compliance
//! recomputes them through [`reports`]); ending a session closes it and
//! mints its earnings in one database transaction, once, with provenance
//! both ways.

pub mod domain;
pub mod entities;
pub mod operations;
pub mod reports;
mod store;
mod transport;

pub use operations::Mining;
pub use transport::MiningApi;
