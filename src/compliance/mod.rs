//! Compliance: reading and verifying the audit trail, compliance reports
//! over a period, system health snapshots and alerts.

pub mod entities;
pub mod operations;
pub mod store;
pub mod transport;

pub use operations::Compliance;
pub use transport::ComplianceApi;
