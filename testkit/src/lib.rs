//! What the integration tests (`tests/it`) and the benchmark (`azora-bench`)
//! share: a fresh database per run, the real server started on port 0 by the
//! same `Application` that `azora serve` runs, clients, and the calls that
//! set up users, keys, wallets and money.
//!
//! Everything that depends on how the server is configured and started is in
//! [`server`], and nowhere else.

pub mod cluster;
pub mod database;
pub mod redis;
pub mod server;
pub mod setup;

pub use cluster::{ClusterFile, PostgresCluster};
pub use database::{Backend, TestDatabase, postgres_server_url};
pub use redis::{RedisServer, free_port};
pub use server::{Admin, RunningServer};

use std::net::SocketAddr;

use azora::proto::types::Decimal;
use tonic::Request;
use tonic::transport::Channel;

/// A request carrying `authorization: Bearer <key>`.
pub fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("an ASCII key"),
    );
    request
}

/// An AZR amount as the protos carry it.
pub fn azr(value: &str) -> Option<Decimal> {
    Some(Decimal {
        value: value.into(),
    })
}

/// A new connection to the server at `address`.
pub async fn connect(address: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{address}"))
        .expect("a socket address is a valid URI")
        .connect()
        .await
}

/// A point in time as the protos carry it.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}
