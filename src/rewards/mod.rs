//! Knowledge rewards: a teacher or a service verifies a student's proof of
//! knowledge, and the student is paid from the circulation pool through the
//! ledger.
//!
//! Invariants (the database holds them too): one source transaction id is
//! recorded and paid at most once, whatever the races; a different proof
//! under a used source id is refused; each reward names its ledger transfer,
//! written in the same database transaction as the proof; nobody verifies
//! their own proof. A student's total earned is the exact sum of their
//! rewards, summed by the database, so there is no second copy to drift.

pub mod domain;
pub mod entities;
pub mod operations;
mod store;
mod transport;

pub use operations::Rewards;
pub use transport::KnowledgeRewardApi;
