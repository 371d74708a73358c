//! Compliance: reading and verifying the audit trail, compliance reports
//! over a period, system health snapshots and alerts.
//!
//! Layout: `transport` (gRPC handlers), `operations` (authorization,
//! transactions, retries, watchers), `checks` (one function per invariant a
//! report verifies), `store` (SQL on the compliance tables), `domain`.
//! The ledger figures a report needs come from the Treasury's read API
//! (`treasury::reports`), who holds a wallet from Identity's directory.
//! Other modules write through [`alerts`] only.
//!
//! Invariants: alerts are numbered in commit order (a watcher's cursor never
//! skips one); a report's figures all come from one snapshot of the books;
//! a request id yields one report per caller.

pub mod alerts;
mod checks;
pub mod domain;
pub mod entities;
pub mod operations;
mod store;
mod transport;

pub use operations::Compliance;
pub use transport::ComplianceApi;
