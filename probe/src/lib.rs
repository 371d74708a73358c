//! `azora-probe`: one `grpc.health.v1.Health/Check`, answered SERVING or not.
//!
//! For health checks that run a command inside the container (compose's
//! `healthcheck`): the runtime image is distroless, with no shell, no curl
//! and no grpcurl. Kubernetes does not need it; its probes speak gRPC
//! themselves (`deploy/kubernetes/deployment.yaml`).

use std::time::Duration;

use clap::Parser;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Exits 0 when the entry answers SERVING; 1 when it answers anything else,
/// is unknown, or no answer comes in time.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(name = "azora-probe", version)]
pub struct Probe {
    /// The server to ask.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// How long connecting and the call may take together, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// The health entry: `readiness`, `liveness`, `""` or a service's full
    /// name.
    #[arg(default_value = "readiness")]
    pub service: String,
}

impl Probe {
    /// `Ok` only when the entry answers SERVING; otherwise why not.
    pub async fn check(&self) -> Result<(), String> {
        let timeout = Duration::from_millis(self.timeout_ms);
        let endpoint = Endpoint::from_shared(self.addr.clone())
            .map_err(|error| format!("{}: {error}", self.addr))?;
        let ask = async {
            let channel = endpoint
                .connect()
                .await
                .map_err(|error| format!("connecting to {}: {error}", self.addr))?;
            let response = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: self.service.clone(),
                })
                .await
                .map_err(|status| format!("{:?}: {:?}", self.service, status.code()))?;
            match ServingStatus::try_from(response.into_inner().status) {
                Ok(ServingStatus::Serving) => Ok(()),
                Ok(status) => Err(format!("{:?}: {}", self.service, status.as_str_name())),
                Err(unknown) => Err(format!("{:?}: {unknown}", self.service)),
            }
        };
        tokio::time::timeout(timeout, ask)
            .await
            .map_err(|_| format!("no answer from {} within {timeout:?}", self.addr))?
    }
}
