//! The integration tests, one binary: each module is one suite, all sharing
//! `common` (the server on port 0 against a fresh database per test, the
//! clients and the setup helpers). One binary links once instead of once
//! per suite; `cargo test --test it treasury::` runs one suite.
//!
//! Everything here shares one process: no test may set a global tracing
//! subscriber, a process-wide environment variable or a panic hook that
//! counts other tests' panics (see `common::capture`).

#[macro_use]
mod common;

mod billing;
mod binary;
mod compensation;
mod compliance;
mod compliance_integrity;
mod cross_language;
mod dependency_tls;
mod deploy;
mod fuzz;
mod health;
mod identity;
mod ledger_batches;
mod malformed;
mod metadata_queries;
mod metrics;
mod mining;
mod mining_rollups;
mod multi_transfers;
mod read_models;
mod resilience;
mod retries;
mod reversals;
mod rewards;
mod service_keys;
mod staking;
mod traces;
mod transfer_batches;
mod transport;
mod treasury;
mod watch_streams;
