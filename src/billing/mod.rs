//! Billing: subscriptions, the monthly invoices they issue, paying an
//! invoice through the ledger, and users' balances.
//!
//! Invariants (the database holds them too): a period of a subscription is
//! invoiced once, however many replicas run the issuer; an invoice moves only
//! open -> paid, and a paid invoice names its ledger transfer into the
//! treasury reserve, written in the same database transaction, so paying
//! twice pays once. Balances are read from the ledger's own wallet balances
//! (which the compliance report checks against the entries); nothing here
//! keeps a second copy of them.

pub mod domain;
pub mod entities;
pub mod operations;
mod store;
mod transport;

pub use operations::{Billing, run_issuer};
pub use transport::BillingApi;
