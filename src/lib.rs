//! azora: the treasury of the AZR token economy, served over gRPC.
//!
//! Layout: one folder per service (`identity/`), each split into `transport`
//! (gRPC handlers), `operations` (use cases, authorization, transactions),
//! `store` (SeaORM queries) and `domain` (types parsed at the edge). Shared
//! pieces live beside them: configuration, startup, errors, authentication,
//! health, pagination and exact fixed-point numbers.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod compliance;
pub mod config;
pub mod db;
pub mod error;
pub mod fixed;
pub mod health;
pub mod identity;
pub mod mining;
pub mod pagination;
pub mod proto;
pub mod redis;
pub mod startup;
pub mod transport;
pub mod treasury;

pub use error::{Error, FieldViolation};
