//! Traces over OTLP: the `azora` binary, as deployed, exports to an OTLP
//! receiver this test runs (the collector's gRPC `TraceService`), and a
//! client's W3C trace continues into azora's spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azora::proto::identity as pb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora_testkit::{authed, azr};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::process::Command;

/// Every span exported to it.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn azora(directory: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_azora"));
    command
        .current_dir(directory)
        .env(
            "AZORA_DATABASE_URL",
            format!("sqlite://{}/azora.db?mode=rwc", directory.display()),
        )
        .env_remove("AZORA_REDIS_URL")
        .kill_on_drop(true);
    command
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trace_continues_into_the_rpc_its_ledger_batch_and_statements() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    let serving = receiver.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(serving))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });

    let directory =
        std::env::temp_dir().join(format!("azora_traces_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&directory).unwrap();
    let migrated = azora(&directory)
        .args(["migrate", "up"])
        .output()
        .await
        .unwrap();
    assert!(migrated.status.success(), "{migrated:?}");
    let created = azora(&directory)
        .args(["keys", "create", "--bootstrap-admin"])
        .output()
        .await
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();

    let mut serve = azora(&directory);
    serve
        .arg("serve")
        .env("AZORA_OTLP_ENDPOINT", format!("http://{collector}"));
    let (mut server, address) = crate::common::serve_binary(serve).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = "b7ad6b7169203331";
    let traced = |message| {
        let mut request = authed(&key, message);
        request.metadata_mut().insert(
            "traceparent",
            format!("00-{trace}-{parent}-01").parse().unwrap(),
        );
        request
    };
    let mut identity = IdentityServiceClient::new(channel.clone());
    let admin = identity
        .list_users(authed(&key, pb::ListUsersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .users
        .remove(0);
    let wallet = identity
        .create_wallet(authed(
            &key,
            pb::CreateWalletRequest {
                owner_id: admin.id.clone(),
                address: crate::common::money::address(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .wallet
        .unwrap()
        .id;
    TreasuryServiceClient::new(channel)
        .deposit(traced(tpb::DepositRequest {
            request_id: "traced-deposit".into(),
            to_wallet_id: wallet,
            amount: azr("5"),
            ..Default::default()
        }))
        .await
        .unwrap();

    // SIGTERM: the server flushes what it has buffered as it stops.
    let pid = server.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let ours = loop {
        let ours: Vec<Span> = receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|span| hex(&span.trace_id) == trace)
            .cloned()
            .collect();
        if ours.iter().any(|span| span.name == "db.write_batch") || Instant::now() > deadline {
            break ours;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id: HashMap<String, &Span> =
        ours.iter().map(|span| (hex(&span.span_id), span)).collect();
    let named = |name: &str| {
        ours.iter()
            .find(|span| span.name == name)
            .unwrap_or_else(|| {
                let names: Vec<&str> = ours.iter().map(|span| span.name.as_str()).collect();
                panic!("no span {name:?} in the client's trace: {names:?}")
            })
    };
    let parent_of = |span: &Span| {
        by_id
            .get(&hex(&span.parent_span_id))
            .map(|parent| parent.name.clone())
    };
    // The RPC continues the client's span; the rest nest under it.
    let rpc = named("azora.treasury.v1.TreasuryService/Deposit");
    assert_eq!(hex(&rpc.parent_span_id), parent);
    assert_eq!(rpc.kind, 2, "a server span");
    assert_eq!(
        parent_of(named("ledger.submit")).as_deref(),
        Some("azora.treasury.v1.TreasuryService/Deposit")
    );
    assert_eq!(
        parent_of(named("ledger.batch")).as_deref(),
        Some("ledger.submit")
    );
    assert_eq!(
        parent_of(named("db.write_batch")).as_deref(),
        Some("ledger.batch")
    );
    // Calls without a traceparent are traces of their own.
    let all = receiver.0.lock().unwrap().clone();
    let listed = all
        .iter()
        .find(|span| span.name == "azora.identity.v1.IdentityService/ListUsers")
        .expect("the untraced call has a span too");
    assert_ne!(hex(&listed.trace_id), trace);
    assert!(listed.parent_span_id.is_empty());
    let _ = std::fs::remove_dir_all(&directory);
}
