//! How the gRPC port is served: TLS and mutual TLS with certificates
//! rotated while serving, the access line of every call, compression, the
//! message-size limit, connection age, and the drain on shutdown with the
//! plaintext health-only port. Transport is the same on both backends, so
//! these run on SQLite (one on PostgreSQL, for the access line of a
//! ledger call).

use std::time::{Duration, Instant};

use crate::common::capture::Captured;
use crate::common::certificates::{Authority, TempDir};
use crate::common::money::azr;
use crate::common::{Backend, TestApp, authed};
use azora::proto::identity as pb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A server with TLS from `dir`'s `server.pem` and `server.key`, the client
/// CA `client-ca.pem` when `mutual`, reading the files every 100 ms.
async fn tls_app(dir: &TempDir, mutual: bool) -> TestApp {
    let (cert, key, client_ca) = (
        dir.path("server.pem"),
        dir.path("server.key"),
        dir.path("client-ca.pem"),
    );
    TestApp::spawn_with(Backend::Sqlite, move |settings| {
        settings.transport.tls_cert = Some(cert);
        settings.transport.tls_key = Some(key);
        settings.transport.tls_client_ca = mutual.then_some(client_ca);
        settings.transport.tls_reload_interval_ms = 100;
    })
    .await
}

fn write_server_files(dir: &TempDir, authority: &Authority) {
    let leaf = authority.server();
    dir.write("server.key", &leaf.key);
    dir.write("server.pem", &leaf.cert);
}

/// A TLS connection trusting `ca`, presenting `client` when given.
async fn tls_channel(
    app: &TestApp,
    ca: &str,
    client: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    tls_channel_to(&app.address.to_string(), ca, client).await
}

async fn tls_channel_to(
    address: &str,
    ca: &str,
    client: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// An authenticated call over `channel`.
async fn authenticated_call(app: &TestApp, channel: Channel) -> Result<(), tonic::Status> {
    IdentityServiceClient::new(channel)
        .get_user(authed(
            &app.admin_key,
            pb::GetUserRequest {
                user_id: app.admin_id.clone(),
            },
        ))
        .await
        .map(drop)
}

/// An authenticated call and a health check over `channel`.
async fn calls_succeed(app: &TestApp, channel: Channel) -> Result<(), tonic::Status> {
    authenticated_call(app, channel.clone()).await?;
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "readiness".into(),
        })
        .await?;
    assert_eq!(health.into_inner().status, ServingStatus::Serving as i32);
    Ok(())
}

/// Waits until `condition` holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_services_health_and_reflection_and_refuses_plaintext() {
    let dir = TempDir::new("tls");
    let authority = Authority::new("azora test CA");
    write_server_files(&dir, &authority);
    let app = tls_app(&dir, false).await;

    let channel = tls_channel(&app, &authority.pem, None).await.unwrap();
    calls_succeed(&app, channel).await.unwrap();

    // A client that does not trust the server's CA never gets to a call.
    let stranger = Authority::new("another CA");
    assert!(tls_channel(&app, &stranger.pem, None).await.is_err());

    // Plaintext on the TLS port: the connection fails, nothing is served.
    let plaintext = azora_testkit::connect(app.address).await;
    if let Ok(channel) = plaintext {
        let refused = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap_err();
        // (The client's own code for the broken connection: hyper sees no
        // HTTP/2 from a TLS server.)
        assert_ne!(refused.code(), Code::Ok, "{refused:?}");
    }

    // grpcurl, as an operator runs it: reflection over TLS.
    let ca = dir.write("ca.pem", &authority.pem);
    let address = app.address.to_string();
    let listed = tokio::task::spawn_blocking(move || {
        std::process::Command::new("grpcurl")
            .args(["-cacert", ca.to_str().unwrap(), "-servername", "localhost"])
            .args([address.as_str(), "list"])
            .output()
    })
    .await
    .unwrap();
    match listed {
        Ok(output) => {
            let services = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && services.contains("azora.treasury.v1.TreasuryService"),
                "grpcurl over TLS: {services} {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Err(error) => assert!(
            std::env::var_os("CI").is_none(),
            "grpcurl is required under CI: {error}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_the_client_ca_signed() {
    let dir = TempDir::new("mtls");
    let servers = Authority::new("server CA");
    let clients = Authority::new("client CA");
    write_server_files(&dir, &servers);
    dir.write("client-ca.pem", &clients.pem);
    let app = tls_app(&dir, true).await;

    let trusted = clients.client("rig-1");
    let channel = tls_channel(&app, &servers.pem, Some((&trusted.cert, &trusted.key)))
        .await
        .unwrap();
    calls_succeed(&app, channel).await.unwrap();

    // No certificate, and one another CA signed: refused in the handshake,
    // so not even health answers.
    let rogue = Authority::new("rogue CA").client("rig-1");
    for client in [None, Some((rogue.cert.as_str(), rogue.key.as_str()))] {
        let refused = match tls_channel(&app, &servers.pem, client).await {
            Err(_) => true,
            Ok(channel) => calls_succeed(&app, channel).await.is_err(),
        };
        assert!(refused, "a client without a trusted certificate was served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_serve_new_connections_without_a_restart() {
    let dir = TempDir::new("rotation");
    let first = Authority::new("first CA");
    write_server_files(&dir, &first);
    let app = tls_app(&dir, false).await;
    let open = tls_channel(&app, &first.pem, None).await.unwrap();
    calls_succeed(&app, open.clone()).await.unwrap();

    let second = Authority::new("second CA");
    write_server_files(&dir, &second);
    let rotated = eventually(Duration::from_secs(10), || async {
        match tls_channel(&app, &second.pem, None).await {
            Ok(channel) => calls_succeed(&app, channel).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(
        rotated,
        "new connections were not served the new certificate"
    );
    assert!(
        tls_channel(&app, &first.pem, None).await.is_err(),
        "new connections still get the old certificate"
    );
    // The connection opened before the rotation keeps what it negotiated.
    calls_succeed(&app, open).await.unwrap();

    // A rotation that leaves files that do not load changes nothing.
    dir.write("server.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let channel = tls_channel(&app, &second.pem, None).await.unwrap();
    calls_succeed(&app, channel).await.unwrap();
}

/// Whether a health check over TLS trusting `ca` reaches `address`.
async fn healthy_over_tls(address: &str, ca: &str) -> bool {
    match tls_channel_to(address, ca, None).await {
        Ok(channel) => HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reads_its_tls_files_again_on_sighup() {
    let dir = TempDir::new("sighup");
    let first = Authority::new("first CA");
    write_server_files(&dir, &first);
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_azora"));
    serve
        .arg("serve")
        .current_dir(&dir.0)
        .env_remove("AZORA_DATABASE_URL")
        .env_remove("AZORA_REDIS_URL")
        .env("AZORA_TLS_CERT", dir.path("server.pem"))
        .env("AZORA_TLS_KEY", dir.path("server.key"))
        // Only the signal can make it read them within the test.
        .env("AZORA_TLS_RELOAD_INTERVAL_MS", "3600000");
    let (mut server, address) = crate::common::serve_binary(serve).await;
    assert!(healthy_over_tls(&address, &first.pem).await);

    let second = Authority::new("second CA");
    write_server_files(&dir, &second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !healthy_over_tls(&address, &second.pem).await,
        "read again before the signal"
    );
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([name, &server.id().unwrap().to_string()])
            .status()
            .unwrap()
            .success()
    };
    assert!(signal("-HUP"));
    assert!(
        eventually(Duration::from_secs(10), || healthy_over_tls(
            &address,
            &second.pem
        ))
        .await,
        "SIGHUP did not bring the new certificate"
    );
    assert!(signal("-TERM"));
    let status = tokio::time::timeout(Duration::from_secs(20), server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn tls_files_that_do_not_load_stop_start_up_with_the_file_named() {
    let dir = TempDir::new("bad_tls");
    let authority = Authority::new("azora test CA");
    let leaf = authority.server();
    let other = authority.server();
    let cert = dir.write("server.pem", &leaf.cert);
    let wrong_key = dir.write("other.key", &other.key);
    let missing = dir.path("missing.key");
    let database = azora_testkit::TestDatabase::create(Backend::Sqlite).await;
    let start = |key: std::path::PathBuf| {
        let mut settings = azora::config::Settings::with_database(&database.url);
        settings.transport.tls_cert = Some(cert.clone());
        settings.transport.tls_key = Some(key);
        async move {
            azora::startup::Application::build(settings, true)
                .await
                .err()
                .map(|error| format!("{error:#}"))
                .expect("the server must not start")
        }
    };
    let error = start(missing.clone()).await;
    assert!(error.contains(&missing.display().to_string()), "{error}");
    let error = start(wrong_key).await;
    assert!(
        error.contains("do not make a certificate and its key"),
        "{error}"
    );
}

/// The access lines `log` holds so far, as the JSON objects they are.
fn access_lines(log: &Captured) -> Vec<serde_json::Value> {
    log.text()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["target"] == "azora::access")
        .collect()
}

/// Runs `test` with the server's log captured as JSON lines, as
/// `AZORA_LOG_FORMAT=json` writes them.
async fn with_json_log<F, Fut>(test: F)
where
    F: FnOnce(Captured) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("azora::access=info")
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    crate::common::capture::with_subscriber(subscriber, test(log)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_writes_one_access_line_with_its_code_key_trace_and_request_id() {
    with_json_log(|log| async move {
        let app = TestApp::spawn(Backend::Postgres).await;
        let (member_id, member_key, from) = app.member_with_wallet("payer").await;
        let (_, _, to) = app.member_with_wallet("payee").await;
        app.fund(&from, "10").await;
        let before = access_lines(&log).len();

        let mut treasury = TreasuryServiceClient::new(app.channel().await);
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut transfer = authed(
            &member_key,
            tpb::TransferRequest {
                request_id: "access-line-1".into(),
                from_wallet_id: from.clone(),
                to_wallet_id: to.clone(),
                amount: azr("1"),
                ..Default::default()
            },
        );
        transfer.metadata_mut().insert(
            "traceparent",
            format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
        );
        treasury.transfer(transfer).await.unwrap();
        let unauthenticated = treasury
            .transfer(tonic::Request::new(tpb::TransferRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(unauthenticated.code(), Code::Unauthenticated);
        let missing = treasury
            .get_transaction(authed(
                &app.admin_key,
                tpb::GetTransactionRequest {
                    transaction_id: uuid::Uuid::new_v4().to_string(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);

        let member_key_id = IdentityServiceClient::new(app.channel().await)
            .list_api_keys(authed(
                &member_key,
                pb::ListApiKeysRequest {
                    user_id: member_id,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .api_keys[0]
            .id
            .clone();
        // The line is written when the response ends, which the client may
        // see first.
        assert!(
            eventually(Duration::from_secs(5), || async {
                access_lines(&log).len() >= before + 4
            })
            .await
        );
        let lines = access_lines(&log)[before..before + 4].to_vec();
        let method = |line: &serde_json::Value| line["method"].as_str().unwrap().to_owned();
        assert_eq!(
            lines.iter().map(method).collect::<Vec<_>>(),
            [
                "/azora.treasury.v1.TreasuryService/Transfer",
                "/azora.treasury.v1.TreasuryService/Transfer",
                "/azora.treasury.v1.TreasuryService/GetTransaction",
                "/azora.identity.v1.IdentityService/ListApiKeys",
            ]
        );
        let codes: Vec<&str> = lines.iter().map(|l| l["code"].as_str().unwrap()).collect();
        assert_eq!(codes, ["Ok", "Unauthenticated", "NotFound", "Ok"]);
        let transfer = &lines[0];
        assert_eq!(transfer["key_id"], member_key_id.as_str());
        assert_eq!(transfer["request_id"], "access-line-1");
        assert_eq!(transfer["trace_id"], trace);
        assert!(transfer["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(
            transfer["duration_ms"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
                > 0.0
        );
        // A refused call names no key; no line carries a secret.
        assert!(lines[1].get("key_id").is_none(), "{}", lines[1]);
        assert!(lines[2].get("request_id").is_none(), "{}", lines[2]);
        assert!(!log.text().contains(&member_key));
        assert!(!log.text().contains(&app.admin_key));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_calls_are_accepted_and_answered_compressed_when_asked() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let mut identity = IdentityServiceClient::new(app.channel().await)
            .send_compressed(encoding)
            .accept_compressed(encoding);
        let response = identity
            .get_user(authed(
                &app.admin_key,
                pb::GetUserRequest {
                    user_id: app.admin_id.clone(),
                },
            ))
            .await
            .unwrap();
        let used = response.metadata().get("grpc-encoding").unwrap();
        let expected = match encoding {
            CompressionEncoding::Gzip => "gzip",
            _ => "zstd",
        };
        assert_eq!(used, expected);
        assert_eq!(response.into_inner().user.unwrap().id, app.admin_id);
    }
    // A client that asks for nothing gets nothing compressed.
    let plain = IdentityServiceClient::new(app.channel().await)
        .get_user(authed(
            &app.admin_key,
            pb::GetUserRequest {
                user_id: app.admin_id.clone(),
            },
        ))
        .await
        .unwrap();
    assert!(plain.metadata().get("grpc-encoding").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_configured_size_is_refused_and_writes_nothing() {
    let app = TestApp::spawn_with(Backend::Sqlite, |settings| {
        settings.transport.max_message_bytes = 2048;
    })
    .await;
    let mut identity = app.identity().await;
    let oversized = identity
        .create_user(authed(
            &app.admin_key,
            pb::CreateUserRequest {
                username: "big".into(),
                email: format!("{}@example.com", "x".repeat(4096)),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(oversized.code(), Code::OutOfRange, "{oversized:?}");
    let users = identity
        .list_users(authed(&app.admin_key, pb::ListUsersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users.len(), 1, "only the admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_their_maximum_age_are_replaced_without_failing_calls() {
    with_json_log(|log| async move {
        let app = TestApp::spawn_with(Backend::Sqlite, |settings| {
            settings.transport.max_connection_age_ms = 300;
        })
        .await;
        let mut identity = app.identity().await;
        let get = pb::GetUserRequest {
            user_id: app.admin_id.clone(),
        };
        for _ in 0..8 {
            identity
                .get_user(authed(&app.admin_key, get.clone()))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let peers: std::collections::BTreeSet<String> = access_lines(&log)
            .iter()
            .filter(|line| line["method"] == "/azora.identity.v1.IdentityService/GetUser")
            .map(|line| line["peer"].as_str().unwrap().to_owned())
            .collect();
        // 1.2 s of calls over connections that live 0.3 s: one channel, and
        // yet several connections, each call served.
        assert!(
            peers.len() >= 2,
            "one connection served every call: {peers:?} {}",
            log.text()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_health_goes_not_serving_while_calls_are_still_taken_for_the_drain_delay() {
    let mut app = TestApp::spawn_with(Backend::Sqlite, |settings| {
        settings.transport.health_listen_addr = Some("127.0.0.1:0".parse().unwrap());
        settings.transport.shutdown_drain_delay_ms = 1500;
    })
    .await;
    let health_address = app.health_address.expect("a health listener");
    let probe = Channel::from_shared(format!("http://{health_address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let readiness = || {
        let probe = probe.clone();
        async move {
            HealthClient::new(probe)
                .check(HealthCheckRequest {
                    service: "readiness".into(),
                })
                .await
                .map(|response| response.into_inner().status)
        }
    };
    assert_eq!(readiness().await.unwrap(), ServingStatus::Serving as i32);
    // The health port serves health alone.
    let refused = IdentityServiceClient::new(probe.clone())
        .get_user(authed(&app.admin_key, pb::GetUserRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unimplemented);

    let channel = app.channel().await;
    let began = Instant::now();
    app.begin_shutdown();
    assert!(
        eventually(Duration::from_secs(1), || async {
            readiness().await.ok() == Some(ServingStatus::NotServing as i32)
        })
        .await,
        "readiness did not go NOT_SERVING"
    );
    // Inside the delay: calls, on open and on new connections, still work.
    authenticated_call(&app, channel).await.unwrap();
    authenticated_call(&app, app.channel().await).await.unwrap();
    assert!(began.elapsed() < Duration::from_millis(1500));
    // After it: new connections are refused.
    assert!(
        eventually(Duration::from_secs(5), || async {
            azora_testkit::connect(app.address).await.is_err()
        })
        .await,
        "still accepting connections after the drain delay"
    );
    assert!(began.elapsed() >= Duration::from_millis(1500));
}
